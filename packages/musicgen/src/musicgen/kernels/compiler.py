"""Compiling the kernels once, keeping them on disk, and running them through MLX.

MLX's ``mx.fast.cuda_kernel`` compiles a custom kernel with NVRTC in every process and never
keeps the result, a second or more per kernel: most of a fresh process's first generation. So
each kernel here is one self-contained CUDA source (no headers), compiled by the NVRTC library
MLX itself loads into a cubin for this GPU, written to ``kernel_cache_dir()/musicgen`` under a
name that carries a digest of the source and the GPU, read back by later processes, and run
with ``mx.fast.precompiled_cuda_kernel``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from functools import cache
from pathlib import Path

import mlx.core as mx

THREADS = 256  # 8 warps per block
DTYPES = (mx.float16, mx.bfloat16, mx.float32)
CACHE_ENV = "MLX_RAG_KERNEL_CACHE"
_OFF = ("0", "off", "false", "no", "none")


# The element types as the kernels name them (no CUDA headers: half and bfloat16 are their bits).
CTYPES = {mx.float32: "float", mx.float16: "f16", mx.bfloat16: "bf16", mx.int32: "int",
          mx.uint32: "unsigned int"}  # fmt: skip

PRELUDE = """
typedef unsigned int uint32_t;
struct f16 { unsigned short bits; };
struct bf16 { unsigned short bits; };
#define INFINITY __int_as_float(0x7f800000)
template <typename T> __device__ inline float to_float(T v);
template <> __device__ inline float to_float<float>(float v) { return v; }
template <> __device__ inline float to_float<f16>(f16 v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}
template <> __device__ inline float to_float<bf16>(bf16 v) {
  return __uint_as_float(((unsigned int)v.bits) << 16);
}
template <typename T> __device__ inline T from_float(float v);
template <> __device__ inline float from_float<float>(float v) { return v; }
template <> __device__ inline f16 from_float<f16>(float v) {
  f16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
  return h;
}
template <> __device__ inline bf16 from_float<bf16>(float v) {  // round to nearest even
  const unsigned int u = __float_as_uint(v);
  bf16 b;
  b.bits = (v != v) ? 0x7fc0 : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  return b;
}
// 16 bytes of T: one vector load.
template <typename T> struct alignas(16) Pack { T v[16 / sizeof(T)]; };
template <typename T> __device__ inline Pack<T> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T>*>(p);
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
"""


class KernelError(RuntimeError):
    """A kernel did not compile (a bug here, or an NVRTC that cannot target this GPU)."""


@cache
def _nvrtc() -> ctypes.CDLL | None:
    """NVRTC: the library MLX's CUDA backend has loaded, else the pip wheel's."""
    names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    for folder in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"):
            names += [str(p) for p in sorted(Path(folder, sub).glob("libnvrtc.so*"))]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@cache
def architecture() -> str | None:
    """The GPU's ``sm_XY``, as NVRTC names it; None off CUDA."""
    if not mx.cuda.is_available():
        return None
    value = mx.device_info().get("architecture")
    return value if isinstance(value, str) and value.startswith("sm_") else None


def compiler_available() -> bool:
    return architecture() is not None and _nvrtc() is not None


def _compile(source: str, arch: str) -> bytes:
    lib = _nvrtc()
    program = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"kernel.cu", 0, None,
                              None):  # fmt: skip
        raise KernelError("NVRTC could not create a program.")
    try:
        options = [f"--gpu-architecture={arch}".encode(), b"--std=c++17"]
        status = lib.nvrtcCompileProgram(program, len(options),
                                         (ctypes.c_char_p * len(options))(*options))  # fmt: skip
        if status:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(program, log)
            raise KernelError(f"NVRTC error {status}:\n{log.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        lib.nvrtcGetCUBINSize(program, ctypes.byref(size))
        binary = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(program, binary)
        return binary.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


_BINARIES: dict[str, bytes] = {}


def binary(name: str, source: str, folder: Path | None) -> bytes:
    """The cubin of kernel ``name``: from this process, from ``folder``, or compiled now (and
    written to ``folder``, atomically, for the next process)."""
    found = _BINARIES.get(name)
    if found is not None:
        return found
    path = folder / f"{name}.cubin" if folder is not None else None
    if path is not None and path.is_file():
        found = path.read_bytes()
    if not found:
        found = _compile(source, architecture())
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_bytes(found)
                temporary.replace(path)
            except OSError:
                pass  # a read-only cache: compile again next time
    _BINARIES[name] = found
    return found


class Kernel:
    """One compiled kernel: ``kernel(inputs, output_shapes, output_dtypes, grid, threadgroup,
    scalars)`` -> outputs, the grid in threads (as ``mx.fast.cuda_kernel``)."""

    def __init__(self, name: str, source: str, folder: Path | None):
        self.name, self.source, self.folder = name, source, folder

    def __call__(
        self, inputs, output_shapes, output_dtypes, grid, threadgroup, scalars=(), shared_memory=0
    ):
        return mx.fast.precompiled_cuda_kernel(
            name=self.name,
            compiled_source=binary(self.name, self.source, self.folder),
            inputs=inputs,
            output_shapes=output_shapes,
            output_dtypes=output_dtypes,
            scalars=list(scalars),
            grid=grid,
            threadgroup=threadgroup,
            shared_memory=shared_memory,
            ensure_row_contiguous=True,
        )


def kernel_source(
    kind: str, body: str, params: list[str], header: str, defines: dict, bounds: tuple = ()
) -> tuple:
    """(name, source) of a kernel: ``#define``s (ints, floats as float literals, dtypes as
    typedefs), the prelude, ``header``, then ``extern "C" __global__ void name(params) {body}``
    (with ``__launch_bounds__(*bounds)`` if given); the name ends in a digest of everything else
    and of the GPU."""
    lines = []
    for key, value in defines.items():
        if isinstance(value, mx.Dtype):
            lines.append(f"typedef {CTYPES[value]} {key};")
        elif isinstance(value, float):
            lines.append(f"#define {key} {value!r}f")
        else:
            lines.append(f"#define {key} {value}")
    text = PRELUDE + "\n".join(lines) + "\n" + header
    attributes = f"__launch_bounds__({', '.join(map(str, bounds))}) " if bounds else ""
    text += f'extern "C" __global__ void {attributes}KERNEL({", ".join(params)}) {{\n{body}\n}}\n'
    digest = hashlib.sha256((text + str(architecture())).encode()).hexdigest()[:16]
    name = f"musicgen_{kind}_{digest}"
    return name, text.replace(" KERNEL(", f" {name}(")


def kernel_cache_dir() -> Path | None:
    """The folder for compiled GPU kernels: ``$MLX_RAG_KERNEL_CACHE`` (``0`` turns it off),
    else ``mlx-rag/kernels`` in the user's cache folder; one subfolder per MLX version."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    if value and value.strip():
        root = Path(value).expanduser()
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "mlx-rag" / "kernels"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "mlx-rag" / "kernels"
    return root / f"mlx-{mx.__version__}"


@cache
def build(
    kind: str,
    body: str,
    inputs: tuple,
    outputs: tuple,
    scalars: tuple = (),
    header: str = "",
    launch_bounds: tuple = (),
    **defines,
) -> Kernel:
    """The kernel ``kind``: ``inputs`` and ``outputs`` are (name, dtype) pairs, ``scalars``
    (C type, name) pairs after them; ``defines`` are ints, floats or dtypes (typedefs);
    ``launch_bounds`` the kernel's ``__launch_bounds__`` (threads, blocks per multiprocessor). One
    object per combination, compiled on first use and kept on disk (``musicgen.kernels.compiler``).
    """
    params = [f"const {CTYPES[dtype]}* {name}" for name, dtype in inputs]
    params += [f"{CTYPES[dtype]}* {name}" for name, dtype in outputs]
    params += [f"{ctype} {name}" for ctype, name in scalars]
    name, source = kernel_source(kind, body, params, header, defines, launch_bounds)
    folder = kernel_cache_dir()
    return Kernel(name, source, folder / "musicgen" if folder is not None else None)
