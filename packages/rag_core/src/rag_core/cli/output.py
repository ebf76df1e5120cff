"""Small output helpers shared by the CLI commands (and plugins' commands): notes, progress
bars, JSON and aligned tables.

Results go to stdout; notes (status lines, hints that repeat on every run) and progress bars go
to stderr, and ``mlx-rag --quiet`` (or ``MLX_RAG_QUIET=1``) silences them. Warnings and errors
are never silenced.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

QUIET_ENV = "MLX_RAG_QUIET"
QUIET_KEY = "mlx_rag.quiet"  # in the root click context's meta


def is_quiet() -> bool:
    """Whether notes and progress bars are off: ``mlx-rag --quiet`` or ``MLX_RAG_QUIET=1``."""
    from rag_core.plugins import env_flag

    if env_flag(QUIET_ENV):
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().meta.get(QUIET_KEY))


_bars: list[Any] = []  # the progress bars showing now (tqdm), innermost last


def note(message: str) -> None:
    """A note on stderr, unless quiet; above the progress bar when one is showing."""
    if is_quiet():
        return
    if _bars and not _bars[-1].disable:  # a bar is showing: print above it
        _bars[-1].write(message, file=sys.stderr)
        sys.stderr.flush()
    else:
        click.echo(message, err=True)


@contextlib.contextmanager
def progress_bar(
    description: str,
    enabled: bool | None = None,
    *,
    unit: str = "step",
    bar_format: str | None = None,
) -> Iterator[Callable[[float, float], None]]:
    """A callback ``(done, total)`` that drives a progress bar on stderr, counting ``unit``s.

    ``enabled=None`` shows it only on a terminal, and not with ``mlx-rag --quiet``. The bar
    starts at the first report, when the total is known, and starts again if the total
    changes; it is gone when the block ends.
    """
    from tqdm import tqdm

    if enabled is None and is_quiet():
        enabled = False
    bar = None

    def report(done: float, total: float) -> None:
        nonlocal bar
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
                _bars.remove(bar)
            bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr,
                       bar_format=bar_format, disable=None if enabled is None else not enabled)
            _bars.append(bar)
        bar.update(done - bar.n)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
            _bars.remove(bar)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (paths and other objects as strings)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print rows in columns under upper-case headers."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [[h.upper() for h in headers], *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short(value: Any, limit: int = 200) -> str:
    """A one-line rendering of a result value, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it."""
    try:
        return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
    except ValueError:
        return path
