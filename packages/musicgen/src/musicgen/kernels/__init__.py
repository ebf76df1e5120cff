"""Fused CUDA kernels for the decoder's compiled decoding step.

On CUDA a decoding step of a few rows is bound by the number of kernels it launches, not by the
bytes it reads, so the compiled path (``StaticCache``) replaces each layer's ~20 small kernels
with 8, and the heads and the sampling of every step with 2 (``docs/performance.md``):

- ``fused_linear`` (``musicgen.kernels.linear``): layer norm + matrix-vector product
  (+ activation) (+ residual) in one kernel, for up to ``MAX_ROWS`` rows (batch x CFG branches
  x positions), with float weights or 4-/8-bit quantized ones (``nn.QuantizedLinear``).
- ``cached_attention`` (``musicgen.kernels.attention``): self-attention of a few query
  positions with an online softmax. It reads the past keys and values from the cache, the new
  ones from the fused projection, and writes the new ones into the cache *in place*: no slice
  update, no copy of the cache, no mask. ``attention`` is the same kernel for cross-attention.
- ``heads`` and ``sample`` (``musicgen.kernels.sampling``): the final layer norm and every
  codebook's head in one kernel; classifier-free guidance, temperature, top-k and the random
  draw (MLX's own random bits, computed in the kernel) in another, for any batch.

Every kernel is compiled once per shape family by NVRTC and kept on disk by MLX (its
``MLX_PTX_CACHE_DIR``), which ``persist_compiled_kernels`` points at a lasting folder: a fresh
process then loads them in milliseconds instead of compiling them again.

Elsewhere (CPU, Metal) and for shapes the kernels do not cover, the decoder keeps its plain MLX
operations; ``MUSICGEN_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

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

HEADER = """
template <typename T> __device__ inline float to_float(T v);
template <> __device__ inline float to_float<float>(float v) { return v; }
template <> __device__ inline float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ inline float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T> __device__ inline T from_float(float v);
template <> __device__ inline float from_float<float>(float v) { return v; }
template <> __device__ inline __half from_float<__half>(float v) { return __float2half(v); }
template <> __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
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


def available() -> bool:
    """Whether the fused kernels can run: MLX's CUDA backend on the default device, and
    ``MUSICGEN_KERNELS`` is not ``0``."""
    if os.environ.get("MUSICGEN_KERNELS", "1") == "0":
        return False
    return mx.cuda.is_available() and mx.default_device() == mx.gpu


@cache
def build(kind: str, source: str, inputs: tuple, outputs: tuple, header: str = "", **defines):
    """The CUDA kernel ``kind`` with these ``#define`` values (ints, or floats as ``float``
    literals), built by ``mx.fast.cuda_kernel``; one object per combination.

    The name carries a digest of the source: MLX caches compiled kernels on disk by name, so a
    changed kernel never picks up an old build.
    """
    lines = "".join(
        f"#define {name} {value!r}f\n" if isinstance(value, float) else f"#define {name} {value}\n"
        for name, value in defines.items()
    )
    text = lines + HEADER + header
    digest = hashlib.sha256((text + source).encode()).hexdigest()[:12]
    return mx.fast.cuda_kernel(
        name=f"musicgen_{kind}_{digest}",
        input_names=list(inputs),
        output_names=list(outputs),
        source=source,
        header=text,
    )


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


def persist_compiled_kernels() -> Path | None:
    """Keep the CUDA kernels MLX compiles (its own and these) in ``kernel_cache_dir()``.

    MLX's CUDA backend caches every kernel it compiles in ``MLX_PTX_CACHE_DIR`` (by default a
    folder under /tmp, often emptied at boot). Unless that variable is already set, this sets it
    for the process, before the first kernel is compiled, and returns the folder; None where
    nothing changed (no CUDA, cache turned off, folder not writable). Later processes then load
    the kernels instead of compiling them (seconds each).
    """
    if "MLX_PTX_CACHE_DIR" in os.environ or not mx.cuda.is_available():
        return None
    folder = kernel_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    os.environ["MLX_PTX_CACHE_DIR"] = str(folder)
    return folder


from musicgen.kernels.attention import (  # noqa: E402
    attention,
    attention_fits,
    cached_attention,
)
from musicgen.kernels.linear import (  # noqa: E402
    MAX_ROWS,
    activation_fits,
    fused_linear,
    linear_fits,
)
from musicgen.kernels.sampling import heads, heads_fit, sample, sampler_fits  # noqa: E402

__all__ = [
    "CACHE_ENV",
    "MAX_ROWS",
    "activation_fits",
    "attention",
    "attention_fits",
    "available",
    "cached_attention",
    "fused_linear",
    "heads",
    "heads_fit",
    "kernel_cache_dir",
    "linear_fits",
    "persist_compiled_kernels",
    "sample",
    "sampler_fits",
]
