"""`mlx-rag doctor` and `mlx-rag --version`: what this installation runs on."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import click

from rag_core.cli.output import echo_json


def environment() -> dict[str, Any]:
    """Versions, MLX's device and the BLAS behind MLX's CPU matrix products."""
    from rag_core import __version__
    from rag_core.blas import ENV, THREADS_ENV, blas_status, usable_cores

    info: dict[str, Any] = {
        "mlx-rag": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": usable_cores(),
    }
    try:
        import mlx.core as mx

        info["mlx"] = mx.__version__
        info["device"] = mx.default_device().type.name  # "cpu" or "gpu"
    except ImportError as exc:
        info["mlx"] = f"not importable: {exc}"
    status = blas_status()
    info["blas"] = {
        "name": status.name,
        "optimized": status.optimized,
        "library": status.library,
        "threads": status.threads,
        "reason": status.reason,
        ENV: os.environ.get(ENV, "auto (default)"),
        THREADS_ENV: os.environ.get(THREADS_ENV),
    }
    return info


def blas_line(blas: dict[str, Any]) -> str:
    count = blas["threads"]
    threads = f", {count} thread{'s' if count != 1 else ''}" if count else ""
    reason = f" ({blas['reason']})" if blas["reason"] else ""
    return f"{blas['name']}{threads}{reason}"


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    info = environment()
    click.echo(f"mlx-rag, version {info['mlx-rag']}")
    click.echo(f"MLX {info.get('mlx')} ({info.get('device', 'no device')}), "
               f"BLAS: {blas_line(info['blas'])}")
    ctx.exit()


version_option = click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=print_version,
    help="Show the version, MLX's device and its BLAS, and exit.",
)  # fmt: skip


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor_command(as_json: bool) -> None:
    """Check the installation: versions, MLX's device, and the BLAS that MLX multiplies with
    on the CPU (checked against NumPy and timed). Exits 1 when a check fails."""
    from rag_core.blas import BUNDLED, ENV, PACKAGE, check_matmul

    info = environment()
    check = check_matmul() if "device" in info else None
    if check:
        info["matmul_check"] = {"size": check.size, "relative_error": check.relative_error,
                                "ms": check.seconds * 1000, "gflops": check.gflops,
                                "ok": check.ok}  # fmt: skip
    if as_json:
        echo_json(info)
    else:
        click.echo(f"mlx-rag {info['mlx-rag']}, Python {info['python']}, {info['platform']}, "
                   f"{info['cpus']} CPUs")
        click.echo(f"MLX: {info['mlx']}" + (f", default device {info['device']}"
                                             if "device" in info else ""))
        blas = info["blas"]
        click.echo(f"BLAS for MLX on the CPU: {blas_line(blas)}")
        if blas["library"]:
            click.echo(f"  library: {blas['library']}")
        if check:
            verdict = "ok" if check.ok else "WRONG RESULTS"
            click.echo(f"  {check.size}x{check.size} float32 product: {verdict} (relative error "
                       f"{check.relative_error:.1e}), {check.seconds * 1000:.1f} ms, "
                       f"{check.gflops:.1f} GFLOP/s")
        if not blas["optimized"] and blas["reason"] != BUNDLED and sys.platform == "linux":
            click.echo(f"  hint: pip install {PACKAGE}, and leave {ENV} unset or 'auto'.")
    if check and not check.ok:
        raise click.exceptions.Exit(1)
