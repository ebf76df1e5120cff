"""Fused CUDA kernels for the decoder's compiled decoding step (and EnCodec's LSTM).

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
- ``decoder_step`` (``musicgen.kernels.step``): for one position of a few rows (batch 1-4
  with CFG), every layer of the step in one persistent kernel, with a grid-wide barrier between
  its phases: ~200 launches become one. Where it covers the decoder it replaces the two above.
- ``lstm_recurrence`` (``musicgen.kernels.lstm``): every time step of one of EnCodec's LSTM
  layers in one kernel, a block per few rows (about a thousand launches for 10 s of audio).
- ``heads`` and ``sample`` (``musicgen.kernels.sampling``): the final layer norm and every
  codebook's head in one kernel; classifier-free guidance, temperature, top-k and the random
  draw (MLX's own random bits, computed in the kernel) in another, for any batch.

Every kernel is compiled once per shape family by NVRTC into a binary for the GPU and kept on
disk (``musicgen.kernels.compiler``, in ``kernel_cache_dir()``); ``persist_compiled_kernels``
points MLX's own kernel cache at the same folder. A fresh process then loads them in
milliseconds instead of compiling them again.

Elsewhere (CPU, Metal) and for shapes the kernels do not cover, the decoder keeps its plain MLX
operations; ``MUSICGEN_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx

from musicgen.kernels.attention import (
    POSITION_SLOTS,
    attention,
    attention_fits,
    cached_attention,
)
from musicgen.kernels.compiler import CACHE_ENV, build, compiler_available, kernel_cache_dir
from musicgen.kernels.linear import (
    MAX_ROWS,
    activation_fits,
    fused_linear,
    linear_fits,
)
from musicgen.kernels.lstm import lstm_fits, lstm_recurrence
from musicgen.kernels.persistent import BARRIER_WORDS, Issued, exclusive_steps
from musicgen.kernels.sampling import heads, heads_fit, sample, sampler_fits
from musicgen.kernels.stacked import StackedLayers, stack_layers, view
from musicgen.kernels.step import (
    decoder_step,
    fold_cross_attention,
    fold_fits,
    step_available,
    step_fits,
    step_rows_fit,
)

_THREAD = threading.local()


def available() -> bool:
    """Whether the fused kernels can run: MLX's CUDA backend on the default device, NVRTC to
    compile them, ``MUSICGEN_KERNELS`` is not ``0`` and the thread is not in
    ``plain_operations``."""
    return not getattr(_THREAD, "plain", False) and _process_can_run_kernels()


def _process_can_run_kernels() -> bool:
    if os.environ.get("MUSICGEN_KERNELS", "1") == "0":
        return False
    return mx.cuda.is_available() and mx.default_device() == mx.gpu and compiler_available()


@contextmanager
def plain_operations() -> Iterator[None]:
    """While held, this thread runs MLX's own operations only (``available()`` is False)."""
    before = getattr(_THREAD, "plain", False)
    _THREAD.plain = True
    try:
        yield
    finally:
        _THREAD.plain = before


def persist_compiled_kernels() -> Path | None:
    """Keep the CUDA kernels MLX compiles (its own and these) in ``kernel_cache_dir()``.

    MLX's CUDA backend keeps the kernels it compiles for its own operations in
    ``MLX_PTX_CACHE_DIR`` (by default a folder under /tmp, often emptied at boot). Unless that
    variable is already set, this sets it for the process, before the first kernel is compiled,
    and returns the folder; None where nothing changed (no CUDA, cache turned off, folder not
    writable). Later processes then load the kernels instead of compiling them.
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


__all__ = [
    "BARRIER_WORDS",
    "CACHE_ENV",
    "MAX_ROWS",
    "POSITION_SLOTS",
    "Issued",
    "StackedLayers",
    "activation_fits",
    "attention",
    "attention_fits",
    "available",
    "build",
    "cached_attention",
    "decoder_step",
    "exclusive_steps",
    "fold_cross_attention",
    "fold_fits",
    "fused_linear",
    "heads",
    "heads_fit",
    "kernel_cache_dir",
    "linear_fits",
    "lstm_fits",
    "lstm_recurrence",
    "persist_compiled_kernels",
    "plain_operations",
    "sample",
    "sampler_fits",
    "stack_layers",
    "step_available",
    "step_fits",
    "step_rows_fit",
    "view",
]
