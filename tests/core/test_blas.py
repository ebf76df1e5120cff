"""rag_core.blas: MLX's CPU matrix products go to OpenBLAS on Linux, and nothing else does.

Each case runs in a fresh interpreter: routing happens once per process, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from rag_core import blas, elf
from rag_core.cli import cli

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="routing applies on Linux only")

# What a process ends with: the status, and whom libmlx's cblas_sgemm slot calls after a product.
REPORT = """
import json, mlx.core as mx, numpy as np
from rag_core import blas, elf
status = blas.blas_status()
a = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
product = np.array(mx.array(a) @ mx.array(a.T))
mlx = elf.find_loaded("libmlx.so")
slot = elf.import_slots(mlx.path, {"cblas_sgemm"})["cblas_sgemm"][0]
print(json.dumps({"optimized": status.optimized, "name": status.name, "reason": status.reason,
                  "library": status.library, "threads": status.threads,
                  "calls": elf.library_of(elf.read_slot(mlx.base + slot)),
                  "error": float(np.abs(product - a @ a.T).max())}))
"""


def run_python(code: str, env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run `code` in a fresh interpreter; its last stdout line parsed as JSON, and its stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLX_RAG_BLAS")}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env=environment | (env or {}), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@linux_only
@pytest.mark.parametrize("order", ["rag_core first", "mlx first", "mlx used first"])
def test_mlx_calls_openblas_whatever_the_import_order(order):
    used = "mx.eval(mx.ones((8, 8)) @ mx.ones((8, 8)))\n"  # binds the slot to netlib first
    before = {"rag_core first": "import rag_core\nimport mlx.core as mx\n",
              "mlx first": "import mlx.core as mx\nimport rag_core\n",
              "mlx used first": "import mlx.core as mx\n" + used + "import rag_core\n"}[order]
    report, stderr = run_python(before + REPORT)
    mkl = blas._auto_path() == blas._mkl_path()  # MKL where installed on an Intel CPU
    assert report["optimized"] and report["name"].startswith("MKL" if mkl else "OpenBLAS")
    assert report["library"] == blas._auto_path()
    assert report["calls"] == report["library"]  # the slot, not just the status
    assert report["threads"] >= 1
    assert report["error"] < 1e-3
    assert "Note:" not in stderr


@linux_only
def test_bundled_leaves_mlx_alone_without_a_note():
    report, stderr = run_python("import rag_core\n" + REPORT, {blas.ENV: "bundled"})
    assert not report["optimized"] and report["reason"] == f"{blas.ENV}=bundled"
    assert "libblas" in Path(report["calls"]).name and report["calls"] == report["library"]
    assert report["error"] < 1e-3
    assert "Note:" not in stderr


# As if neither MKL nor scipy-openblas32 were installed.
HIDE = """
import sys
from importlib import metadata
sys.modules['scipy_openblas32'] = None
found = metadata.distribution
def distribution(name):
    if name == 'mkl':
        raise metadata.PackageNotFoundError(name)
    return found(name)
metadata.distribution = distribution
"""


@linux_only
def test_missing_package_falls_back_with_a_note():
    report, stderr = run_python(HIDE + "import rag_core\n" + REPORT)
    assert not report["optimized"] and blas.PACKAGE in report["reason"]
    assert "libblas" in Path(report["calls"]).name
    assert report["error"] < 1e-3
    assert "Note: MLX's CPU matrix products use" in stderr and "pip install" in stderr


@linux_only
def test_openblas_and_mkl_by_name():
    report, _ = run_python("import rag_core\n" + REPORT, {blas.ENV: "openblas"})
    assert report["optimized"] and report["name"].startswith("OpenBLAS"), report
    assert report["calls"] == report["library"] and report["error"] < 1e-3
    report, stderr = run_python(HIDE + "import rag_core\n" + REPORT, {blas.ENV: "mkl"})
    assert not report["optimized"] and report["reason"] == "mkl is not installed: pip install mkl"
    assert "libblas" in Path(report["calls"]).name and "Note:" in stderr
    broken = ("import rag_core.blas as b\nb._mkl_path = lambda: None\n"
              "b._distribution = lambda package: object()  # mkl without its threading layer\n")
    report, stderr = run_python(broken + REPORT, {blas.ENV: "mkl"})
    assert not report["optimized"] and "pip install intel-openmp" in report["reason"]
    assert report["error"] < 1e-3 and "Note:" in stderr


@linux_only
@pytest.mark.skipif(sys.platform != "linux" or blas._mkl_path() is None,
                    reason="MKL is not installed (pip install rag-core[mkl])")
def test_mkl_takes_the_threads():
    report, stderr = run_python("import rag_core\n" + REPORT,
                                {blas.ENV: "mkl", blas.THREADS_ENV: "1"})
    assert report["optimized"] and report["name"].startswith("MKL 20"), report
    assert report["calls"] == report["library"] == blas._mkl_path()
    assert report["threads"] == 1 and report["error"] < 1e-3 and "Note:" not in stderr
    vendor, _ = run_python("import json, rag_core\n"
                           "print(json.dumps(rag_core.blas_status().vendor))", {blas.ENV: "mkl"})
    assert vendor == "mkl"


def test_auto_prefers_an_installed_mkl_on_intel_cpus_only(monkeypatch, tmp_path):
    """MKL streamed a decoding step's products twice as fast as OpenBLAS on an Intel Xeon and
    12-20 % slower on an AMD EPYC: auto takes it on Intel CPUs (or unknown ones) only, and on
    any CPU rather than MLX's reference BLAS."""
    cpu_vendor = blas.cpu_vendor
    monkeypatch.setattr(blas, "_mkl_path", lambda: "/mkl/libmkl_rt.so.2")
    monkeypatch.setattr(blas, "_openblas_path", lambda: "/openblas/libscipy_openblas.so")
    for vendor, expected in (("GenuineIntel", "mkl"), (None, "mkl"), ("AuthenticAMD", "openblas"),
                             ("HygonGenuine", "openblas")):
        monkeypatch.setattr(blas, "cpu_vendor", lambda vendor=vendor: vendor)
        assert blas._auto_path().startswith(f"/{expected}/"), vendor
    monkeypatch.setattr(blas, "_openblas_path", lambda: None)
    assert blas._auto_path() == "/mkl/libmkl_rt.so.2"  # AMD without OpenBLAS: still MKL
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_vendor(str(cpuinfo)) == "AuthenticAMD"
    assert cpu_vendor(str(tmp_path / "missing")) is None


def test_mkl_is_found_in_its_package(tmp_path, monkeypatch):
    from importlib import metadata

    lib = tmp_path / "lib"  # the environment's lib folder, two levels above site-packages
    lib.mkdir()
    for name in ("libmkl_rt.so.3", "libmkl_core.so.3", "libmkl_intel_thread.so.3"):
        (lib / name).write_bytes(b"")
    (tmp_path / "site" / "packages").mkdir(parents=True)
    monkeypatch.delenv("MKL_THREADING_LAYER", raising=False)

    class Distribution:
        files = ("../../lib/libmkl_core.so.3", "../../lib/libmkl_rt.so.3", "mkl/__init__.py")

        def locate_file(self, name):
            return tmp_path / "site" / "packages" / name

    def distribution(name):
        if name != "mkl":
            raise metadata.PackageNotFoundError(name)
        return Distribution()

    monkeypatch.setattr(metadata, "distribution", distribution)
    # intel-openmp's libiomp5 missing: MKL would end the process at its first product
    assert blas._mkl_path() is None
    monkeypatch.setenv("MKL_THREADING_LAYER", "SEQUENTIAL")  # the user chose another layer
    assert blas._mkl_path() == os.path.realpath(lib / "libmkl_rt.so.3")
    monkeypatch.delenv("MKL_THREADING_LAYER")
    (lib / "libiomp5.so").write_bytes(b"")
    assert blas._mkl_path() == os.path.realpath(lib / "libmkl_rt.so.3")
    (lib / "libmkl_rt.so.3").unlink()
    assert blas._mkl_path() is None  # listed but gone


@linux_only
@pytest.mark.parametrize("library", ["missing", "not a library", "no cblas"])
def test_unusable_library_falls_back_with_a_note(tmp_path, library):
    path = tmp_path / "libblas-custom.so"
    if library == "not a library":
        path.write_text("not ELF")
    elif library == "no cblas":
        path = Path(elf.find_loaded("libc.so.6").path)  # loads, but has no cblas_sgemm
    report, stderr = run_python("import rag_core\n" + REPORT, {blas.ENV: str(path)})
    assert not report["optimized"], report
    assert "libblas" in Path(report["calls"]).name
    assert report["error"] < 1e-3
    assert "Note:" in stderr and str(path) in stderr + report["reason"]


@linux_only
def test_a_library_path_is_used(tmp_path):
    library = blas._openblas_path()
    report, _ = run_python("import rag_core\n" + REPORT,
                           {blas.ENV: library, blas.THREADS_ENV: "1"})  # fmt: skip
    assert report["optimized"] and report["calls"] == os.path.realpath(library)
    assert report["threads"] == 1


@linux_only
def test_torch_keeps_its_own_blas():
    """OpenBLAS stays private to libmlx: torch's sgemm_ (MKL inside libtorch_cpu) is not
    interposed, as it is when an OpenBLAS is preloaded for the whole process."""
    pytest.importorskip("torch")
    code = """
    import json, ctypes, mlx.core as mx, rag_core, torch
    from rag_core import elf
    torch.nn.functional.linear(torch.ones(2, 64), torch.ones(64, 64))  # sgemm_ or sgemv_
    torch.ones(64, 64) @ torch.ones(64, 64)
    lib = next(l for l in elf.loaded_libraries() if l.path.endswith("libtorch_cpu.so"))
    slots = elf.import_slots(lib.path, {"sgemm_", "sgemv_"})
    owners = {elf.library_of(elf.read_slot(lib.base + o)) for s in slots.values() for o in s}
    owners.discard(lib.path)  # not yet resolved: still pointing at its own PLT
    print(json.dumps({"owners": sorted(owners), "global": hasattr(ctypes.CDLL(None),
                      "scipy_cblas_sgemm"), "status": rag_core.blas.blas_status().optimized}))
    """
    report, _ = run_python(code)
    assert report["status"] and not report["global"]
    assert all("openblas" not in owner and "mkl_rt" not in owner for owner in report["owners"])


def test_macos_and_others_are_left_alone(monkeypatch):
    monkeypatch.setattr(blas, "_status", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    status = blas.route_mlx_blas()
    assert status.name == "Accelerate" and status.optimized and status.library is None
    monkeypatch.setattr(blas, "_status", None)
    monkeypatch.setattr(sys, "platform", "win32")
    assert not blas.route_mlx_blas().optimized


@linux_only
def test_import_slots_of_libmlx():
    import mlx.core  # noqa: F401

    library = elf.find_loaded("libmlx.so")
    slots = elf.import_slots(library.path, set(blas.ROUTED))
    assert set(slots) == set(blas.ROUTED) and all(slots.values())


def test_import_slots_rejects_what_is_not_elf(tmp_path):
    path = tmp_path / "x.so"
    path.write_bytes(b"MZ" + bytes(100))
    with pytest.raises(elf.ElfError):
        elf.import_slots(str(path), {"cblas_sgemm"})


def test_version_and_doctor_show_the_blas():
    status = blas.blas_status()
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "mlx-rag, version" in result.output
    assert f"BLAS: {status.name}" in result.output
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["blas"]["name"] == status.name and info["matmul_check"]["ok"]
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0 and "float32 product: ok" in result.output


DOCTOR = "from rag_core.cli import main; main()"


@linux_only
def test_doctor_reports_the_fallback():
    result = subprocess.run([sys.executable, "-c", DOCTOR, "doctor"], capture_output=True,
                            text=True, env=os.environ | {blas.ENV: "bundled"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "reference BLAS" in result.stdout and f"{blas.ENV}=bundled" in result.stdout


def test_threads_default_to_the_usable_cores(monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.delenv(blas.THREADS_ENV, raising=False)
    assert blas.default_threads() == 6
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert blas.default_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert blas.default_threads() == 1
    monkeypatch.setenv(blas.THREADS_ENV, "2")
    assert blas.default_threads() == 2
    monkeypatch.setenv(blas.THREADS_ENV, "many")
    assert blas.default_threads() == 1 and "is not a positive integer" in caplog.text


@pytest.mark.parametrize("vendor, setter", [("openblas", "openblas_set_num_threads"),
                                            ("mkl", "MKL_Set_Num_Threads")])
def test_blas_threads_limit_while_any_block_runs(monkeypatch, vendor, setter):
    calls = []
    monkeypatch.setattr(blas, "_status", blas.BlasStatus("x", True, vendor=vendor))
    monkeypatch.setattr(blas, "_libraries", [object()])
    monkeypatch.setattr(blas, "_call", lambda library, name, restype, count:
                        calls.append((name, count.value)))  # fmt: skip
    monkeypatch.setattr(blas, "default_threads", lambda: 4)
    with blas.blas_threads(1):
        with blas.blas_threads(1):  # another caller's block, overlapping
            pass
        assert calls == [(setter, 1)]
    assert calls == [(setter, 1), (setter, 4)]
    monkeypatch.setattr(blas, "_libraries", [])  # nothing routed: nothing to set
    with blas.blas_threads(1):
        pass
    assert len(calls) == 2
