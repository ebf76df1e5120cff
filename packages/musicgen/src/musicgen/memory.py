"""How many prompts one generate call can take: a batch size from free device memory.

A generation's memory above the loaded weights grows with each row (prompt) of the batch:

* the self-attention cache, every layer's keys and values for every position of the window,
  for both branches of classifier-free guidance;
* EnCodec's working memory while it decodes a window of ``DECODE_WINDOW`` frames layer by
  layer (measured on the H200, musicgen-small, float16, 10 s: 61.9 GB at 256 rows, about
  0.24 GB a row, of which 0.10 GB is the cache; the rest, about 4.4 KB per output sample,
  is EnCodec's);
* the logits and the sampling of a step (small).

``batch_size_for`` divides the free memory (with a margin) by that per-row figure.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from musicgen.model import DECODE_WINDOW

CODEC_BYTES_PER_SAMPLE = 4400  # EnCodec decoding, per output sample of a row (see above)
MARGIN = 0.8  # of the free memory, for what the estimate leaves out
MAX_BATCH = 256  # rows beyond which a GPU step gains no more throughput
UNKNOWN_MEMORY_BATCH = 8  # where free memory cannot be read (CPU): larger batches barely help


def free_memory() -> int | None:
    """Bytes of device memory free for new arrays, or None where it cannot be told (CPU)."""
    if mx.default_device() != mx.gpu:
        return None
    info = mx.device_info()
    if "free_memory" in info:  # CUDA: what the driver reports free on the device
        return int(info["free_memory"])
    if "max_recommended_working_set_size" in info:  # Metal: unified memory
        return max(0, int(info["max_recommended_working_set_size"]) - mx.get_active_memory())
    return None


def bytes_per_row(model: Any, duration: float) -> int:
    """Estimated memory one more prompt adds to a generation of ``duration`` seconds (one
    window at most: longer pieces reuse a window's buffers)."""
    config = model.config.decoder
    positions = round(min(duration, model.max_duration) * model.frame_rate) + config.num_codebooks
    itemsize = model.dtype.size
    cache = config.num_hidden_layers * 2 * 2 * config.hidden_size * positions * itemsize
    window = min(DECODE_WINDOW, positions)
    codec = window * model.codec.hop_length * model.audio_channels * CODEC_BYTES_PER_SAMPLE
    logits = 2 * config.num_codebooks * config.vocab_size * 4 * 4
    return cache + codec + logits


def batch_size_for(model: Any, duration: float, jobs: int) -> int:
    """The batch size for ``jobs`` prompts of ``duration`` seconds with ``model`` loaded: as
    many as fit in the free device memory (at most ``MAX_BATCH`` and ``jobs``), or
    ``UNKNOWN_MEMORY_BATCH`` where free memory cannot be read."""
    jobs = max(1, jobs)
    free = free_memory()
    if free is None:
        return min(jobs, UNKNOWN_MEMORY_BATCH)
    rows = int(free * MARGIN // bytes_per_row(model, duration))
    return max(1, min(jobs, rows, MAX_BATCH))
