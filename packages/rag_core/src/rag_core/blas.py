"""MLX's CPU matrix products through an optimized BLAS on Linux.

The Linux ``mlx[cpu]`` wheel calls ``cblas_sgemm`` (and the d/c variants) in the netlib
reference BLAS it bundles, 10-30x slower than OpenBLAS. ``route_mlx_blas()`` (run by
``import rag_core``) sends libmlx's calls, and only libmlx's, to the OpenBLAS of the
``scipy-openblas32`` wheel: that library is loaded privately (RTLD_LOCAL, its symbols carry a
``scipy_`` prefix) and libmlx's three import slots are pointed at it (see ``rag_core.elf``).
Nothing else in the process sees it: torch, numpy and SciPy keep their own BLAS.

- Before ``mlx.core`` is imported, an import hook routes right after it loads; when it is
  already imported (even after matrix products ran) the slots are rewritten then, and every
  later call goes to OpenBLAS.
- ``MLX_RAG_BLAS``: ``auto`` (default: Intel's MKL where the ``mkl`` package is installed, as
  ``pip install rag-core[mkl]`` does, and the CPU is Intel's, else OpenBLAS), ``mkl``,
  ``openblas``, ``bundled`` (leave MLX alone) or the path of a BLAS library with LP64
  ``cblas_sgemm`` (plain or ``scipy_`` names). On an Intel Xeon MKL streamed the few-row
  products of a decoding step about twice as fast as OpenBLAS; on an AMD EPYC MusicGen's step
  was 12-20 % slower with it (docs/performance.md), so ``auto`` takes MKL on Intel CPUs only.
  ``MLX_RAG_BLAS_THREADS``: the BLAS's threads for MLX (default: the usable cores, at most 8;
  OPENBLAS_NUM_THREADS and MKL_NUM_THREADS keep governing NumPy's and torch's own).
- macOS (Accelerate) and other systems: nothing to do. With ``mlx[cuda]`` matrix products run on
  the GPU; those that run on the CPU stream are routed like ``mlx[cpu]``'s.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV = "MLX_RAG_BLAS"
THREADS_ENV = "MLX_RAG_BLAS_THREADS"
PACKAGE = "scipy-openblas32"  # LP64 OpenBLAS: 32-bit integers, like MLX's cblas calls
MKL_PACKAGE = "mkl"  # Intel's MKL; libmkl_rt's cblas_sgemm is LP64 unless told otherwise
ROUTED = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm")  # what libmlx imports from a BLAS
MLX_LIBRARY = "libmlx.so"
BUNDLED = f"{ENV}=bundled"  # the reason when the user chose MLX's own BLAS
# How each routed library takes its thread count (a library of unknown make: OpenBLAS's name).
THREAD_SETTERS = {"mkl": "MKL_Set_Num_Threads", "openblas": "openblas_set_num_threads"}
PREFIXES = ("scipy_", "")  # scipy-openblas32's names, then plain ones (a user's library)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlasStatus:
    """Which BLAS MLX's CPU matrix products run on, and why."""

    name: str  # e.g. "OpenBLAS 0.3.34 (SkylakeX kernels, 2 threads)"
    optimized: bool
    library: str | None = None  # the file that provides cblas_sgemm to MLX
    threads: int | None = None
    reason: str | None = None  # why MLX is not on an optimized BLAS
    vendor: str | None = None  # "openblas", "mkl", "accelerate" where known

    def summary(self) -> str:
        return f"{self.name} ({self.reason})" if self.reason else self.name


_status: BlasStatus | None = None
_libraries: list[ctypes.CDLL] = []  # keeps routed libraries loaded for the process's lifetime
_lock = threading.Lock()


def route_mlx_blas() -> BlasStatus | None:
    """Route MLX's BLAS calls now if mlx.core is loaded, else as soon as it is (idempotent).

    Returns the status once routing happened, None while it waits for mlx.core.
    """
    if _status is not None:
        return _status
    if not sys.platform.startswith("linux"):
        return _set(_platform_status())
    if "mlx.core" in sys.modules:
        return _route_once()
    if not any(isinstance(finder, _AfterMlxImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterMlxImport())
    return None


def blas_status() -> BlasStatus:
    """The BLAS MLX uses (importing mlx.core, and so routing, if that has not happened)."""
    if _status is None:
        route_mlx_blas()
        try:
            import mlx.core  # noqa: F401  (the import hook routes)
        except ImportError as exc:
            return BlasStatus("none", False, reason=f"MLX is not importable: {exc}")
        route_mlx_blas()  # in case the hook was not installed (mlx.core imported elsewhere)
    assert _status is not None
    return _status


def _set(status: BlasStatus) -> BlasStatus:
    global _status
    _status = status
    return status


def _platform_status() -> BlasStatus:
    if sys.platform == "darwin":
        return BlasStatus("Accelerate", True, vendor="accelerate")
    return BlasStatus("MLX's default BLAS", False, reason=f"not routed on {sys.platform}")


class _AfterMlxImport:
    """A meta path finder that runs the routing right after mlx.core's module is executed."""

    _busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "mlx.core" or self._busy or _status is not None:
            return None
        self._busy = True  # find the real spec through the other finders
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        loader, execute = spec.loader, spec.loader.exec_module

        def exec_module(module) -> None:
            try:
                execute(module)
            finally:
                del loader.exec_module  # back to the class's method
            _route_once()

        loader.exec_module = exec_module
        return spec


def _route_once() -> BlasStatus:
    with _lock:
        if _status is None:
            try:
                _set(_route())
            except Exception as exc:  # never break an import: report and keep MLX's BLAS
                _set(BlasStatus("MLX's bundled BLAS", False, reason=f"routing failed: {exc}"))
            _note(_status)
    return _status  # type: ignore[return-value]


def _note(status: BlasStatus | None) -> None:
    """One visible line when MLX stays on a slow BLAS for a reason the user did not choose."""
    if status and not status.optimized and status.reason and status.reason != BUNDLED:
        log.warning(f"Note: MLX's CPU matrix products use {status.summary()}; they can be "
                    f"10-30x slower. Set {ENV}=bundled to silence this.")


def _route() -> BlasStatus:
    from rag_core import elf

    mlx = elf.find_loaded(MLX_LIBRARY)
    if mlx is None:
        return BlasStatus("MLX's own BLAS", False, reason=f"{MLX_LIBRARY} is not loaded")
    slots = elf.import_slots(mlx.path, set(ROUTED))
    current = _current_provider(mlx, slots)
    choice = os.environ.get(ENV, "auto").strip() or "auto"
    if choice.lower() == "bundled":
        return BlasStatus(current.name, current.optimized, current.library, reason=BUNDLED)
    if not slots:  # e.g. a build that links its BLAS statically: nothing to route
        return current
    named = {"auto": _auto_path, "mkl": _mkl_path,
             "openblas": _openblas_path}.get(choice.lower())
    path = named() if named else os.path.realpath(choice)
    if path is None:
        package = MKL_PACKAGE if choice.lower() == "mkl" else PACKAGE
        reason = f"{package} is not installed: pip install {package}"
        if package == MKL_PACKAGE and _distribution(MKL_PACKAGE) is not None:
            reason = ("MKL's threading layer is incomplete (libiomp5 or libmkl_intel_thread "
                      "missing): pip install intel-openmp, or set MKL_THREADING_LAYER")
        return BlasStatus(current.name, False, current.library, reason=reason)
    if not named and not Path(path).is_file():
        return BlasStatus(current.name, False, current.library,
                          reason=f"{ENV}={choice!r} is neither 'auto', 'mkl', 'openblas', "
                                 f"'bundled' nor a file")
    try:
        library = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError as exc:
        return BlasStatus(current.name, False, current.library, reason=f"cannot load {path}: {exc}")
    functions = {name: _function(library, name) for name in slots}
    missing = [name for name, address in functions.items() if not address]
    if missing:
        return BlasStatus(current.name, False, current.library,
                          reason=f"{path} has no {', '.join(missing)}")
    if _symbol(library, "MKL_Get_Version_String") is not None:
        _call(library, THREAD_SETTERS["mkl"], None, ctypes.c_int(default_threads()))
        name, vendor = _mkl_name(library), "mkl"
        threads = _call(library, "MKL_Get_Max_Threads", ctypes.c_int)
    else:
        config = _call(library, "openblas_get_config", ctypes.c_char_p)
        if config and b"USE64BITINT" in config:
            return BlasStatus(current.name, False, current.library,
                              reason=f"{path} is an ILP64 build (64-bit integers); MLX needs "
                                     f"LP64")
        _call(library, THREAD_SETTERS["openblas"], None, ctypes.c_int(default_threads()))
        name, vendor = _describe(library, config), "openblas" if config else None
        threads = _call(library, "openblas_get_num_threads", ctypes.c_int)
    _libraries.append(library)
    for slot, offsets in slots.items():
        for offset in offsets:
            elf.write_slot(mlx.base + offset, functions[slot])
    return BlasStatus(name, True, path, threads, vendor=vendor)


_limits = 0  # open blas_threads() sections


@contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Run the routed BLAS on ``count`` threads inside the block, then on its threads again.

    For callers that run MLX on several CPU streams at once (one thread each, e.g. the
    embedder's batches): a BLAS that also splits each product over every core would have the
    threads wait for each other. Blocks may overlap (from several threads); the count goes back
    when the last one ends. Nothing happens where no library was routed."""
    global _limits
    library = _libraries[-1] if _libraries else None
    mkl = _status is not None and _status.vendor == "mkl"
    setter = THREAD_SETTERS["mkl" if mkl else "openblas"]
    with _lock:
        _limits += 1
        if library is not None and _limits == 1:
            _call(library, setter, None, ctypes.c_int(max(1, count)))
    try:
        yield
    finally:
        with _lock:
            _limits -= 1
            if library is not None and _limits == 0:
                _call(library, setter, None, ctypes.c_int(default_threads()))


def default_threads() -> int:
    """MLX_RAG_BLAS_THREADS, else the usable cores (at most 8), as torch and OpenBLAS do.

    On 2 idle cores 2 threads made `mlx-rag ingest docs/` and a MusicGen step about 1.5x
    faster than 1; on 2 cores shared with other busy processes (load average 5-7) they made
    them 2-5x slower, OpenBLAS's threads waiting for each other: MLX_RAG_BLAS_THREADS=1 there.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if value.isdigit() and int(value) >= 1:
            return int(value)
        log.warning(f"Note: {THREADS_ENV}={value!r} is not a positive integer; ignored.")
    return max(1, min(8, usable_cores() or 1))


def usable_cores() -> int | None:
    """The CPU cores this process may run on (None when the system does not say)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+: also honours PYTHON_CPU_COUNT
        return os.process_cpu_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _auto_path() -> str | None:
    """``auto``'s library: MKL where installed on an Intel CPU (or one of unknown make), else
    OpenBLAS; MKL still where OpenBLAS is missing."""
    if cpu_vendor() in (None, "GenuineIntel"):
        return _mkl_path() or _openblas_path()
    return _openblas_path() or _mkl_path()


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's maker as Linux names it ("GenuineIntel", "AuthenticAMD"); None if unknown."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip() or None
    except OSError:
        pass
    return None


def _openblas_path() -> str | None:
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "lib", "libscipy_openblas*.so")))
        if found:
            return os.path.realpath(found[0])
    return None


def _mkl_path() -> str | None:
    """libmkl_rt of an installed ``mkl`` package (its wheel puts the libraries in the
    environment's lib folder) with its threading layer; None otherwise."""
    package = _distribution(MKL_PACKAGE)
    if package is None:
        return None
    files = (str(f) for f in package.files or [])
    found = sorted(f for f in files if Path(f).name.startswith("libmkl_rt.so"))
    for name in found:
        path = Path(package.locate_file(name))
        if path.is_file() and _mkl_layers_present(path.parent):
            return os.path.realpath(path)
    return None


def _distribution(package: str):
    """The installed distribution ``package`` (importlib.metadata); None when not installed."""
    from importlib import metadata

    try:
        return metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None


def _mkl_layers_present(folder: Path) -> bool:
    """Whether libmkl_rt's default layers are beside it: MKL loads them at its first product
    and ends the process where one is missing (intel-openmp's libiomp5 is a dependency of the
    `mkl` package, but can be uninstalled). A user who set MKL_THREADING_LAYER chose them."""
    needed = ["libmkl_core.so*"]
    if not os.environ.get("MKL_THREADING_LAYER"):
        needed += ["libmkl_intel_thread.so*", "libiomp5.so*"]
    return all(glob.glob(str(folder / pattern)) for pattern in needed)


def _mkl_name(library: ctypes.CDLL) -> str:
    """"MKL 2026.2" from MKL_Get_Version_String."""
    text = ctypes.create_string_buffer(256)
    _call(library, "MKL_Get_Version_String", None, text, ctypes.c_int(len(text)))
    words = text.value.decode(errors="replace").split()
    version = words[words.index("Version") + 1].split("-")[0] if "Version" in words else ""
    return f"MKL {version}".strip()


def _symbol(library: ctypes.CDLL, name: str):
    """OpenBLAS's function `name` (scipy_-prefixed or plain); None when the library lacks it."""
    for prefix in PREFIXES:
        function = getattr(library, prefix + name, None)
        if function is not None:
            return function
    return None


def _function(library: ctypes.CDLL, name: str) -> int:
    """The address of OpenBLAS's `name`; 0 when the library lacks it."""
    function = _symbol(library, name)
    return 0 if function is None else ctypes.cast(function, ctypes.c_void_p).value or 0


def _call(library: ctypes.CDLL, name: str, restype, *args):
    """Call OpenBLAS's `name` (scipy_-prefixed or plain); None when the library lacks it."""
    function = _symbol(library, name)
    if function is None:
        return None
    function.restype = restype
    return function(*args)


def _describe(library: ctypes.CDLL, config: bytes | None) -> str:
    """"OpenBLAS 0.3.34 (SkylakeX kernels)" from openblas_get_config/get_corename."""
    if not config:
        return "optimized BLAS"
    words = config.decode(errors="replace").split()
    version = ".".join(words[1].split(".")[:3]) if len(words) > 1 else ""
    core = _call(library, "openblas_get_corename", ctypes.c_char_p)
    kernels = f" ({core.decode(errors='replace')} kernels)" if core else ""
    return f"{words[0]} {version}{kernels}".strip()


def _current_provider(mlx, slots: dict[str, list[int]]) -> BlasStatus:
    """Who provides libmlx's cblas_sgemm now: the resolved slot's library, else the library
    that lazy binding would pick (global scope first, then libmlx's own dependencies)."""
    from rag_core import elf

    provider = None
    for offset in slots.get("cblas_sgemm", []):
        owner = elf.library_of(elf.read_slot(mlx.base + offset))
        if owner and owner != mlx.path:
            provider = owner
    if provider is None:
        handle = ctypes.CDLL(mlx.path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        for lookup in (ctypes.CDLL(None), handle):
            function = getattr(lookup, "cblas_sgemm", None)
            if function is not None:
                provider = elf.library_of(ctypes.cast(function, ctypes.c_void_p).value or 0)
                break
    if provider is None:
        return BlasStatus("BLAS linked into libmlx", False, mlx.path)
    name = os.path.basename(provider)
    if name.startswith("libblas") and "mlx" in provider:
        return BlasStatus("MLX's bundled reference BLAS (netlib)", False, provider)
    return BlasStatus(name, "openblas" in name.lower() or "mkl" in name.lower(), provider)


@dataclass(frozen=True)
class MatmulCheck:
    size: int
    relative_error: float  # MLX's float32 product against NumPy's float64 one
    seconds: float

    @property
    def ok(self) -> bool:
        return self.relative_error < 1e-4

    @property
    def gflops(self) -> float:
        return 2 * self.size**3 / self.seconds / 1e9


def check_matmul(size: int = 512, repeats: int = 3) -> MatmulCheck:
    """One size x size float32 product on MLX's CPU stream: correct (against NumPy) and how
    fast (the best of `repeats`). Catches a BLAS with the wrong integer width or calling
    convention, which would give garbage or crash rather than a slow result."""
    import time

    import mlx.core as mx
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    x, y = mx.array(a), mx.array(b)
    product = mx.matmul(x, y, stream=mx.cpu)
    mx.eval(product)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(mx.matmul(x, y, stream=mx.cpu))
        best = min(best, time.perf_counter() - start)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    error = float(np.linalg.norm(np.array(product) - expected) / np.linalg.norm(expected))
    return MatmulCheck(size, error, best)
