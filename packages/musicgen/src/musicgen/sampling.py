"""Choosing the next code from logits: greedy, or temperature + top-k + top-p sampling."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

Sampler = Callable[[mx.array, mx.array | None], mx.array]


def make_sampler(temperature: float = 1.0, top_k: int = 250, top_p: float = 0.0) -> Sampler:
    """A function (logits (N, V) float32, key) -> codes (N,) int32.

    ``temperature=0`` or ``top_k=1`` is greedy (argmax; the key is unused). Otherwise logits
    are divided by the temperature, restricted to the ``top_k`` largest (0 = no limit) and then
    to the smallest set whose probability reaches ``top_p`` (0 or 1 = no limit), in that order,
    as transformers applies them, and one code is drawn per row with ``key``.

    The sampler's ``settings`` attribute holds these arguments (the fused CUDA step,
    ``musicgen.kernels.sample``, draws the same codes from them).
    """
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    if temperature == 0 or top_k == 1:

        def greedy(logits: mx.array, key: mx.array | None = None) -> mx.array:
            return mx.argmax(logits, axis=-1).astype(mx.int32)

        greedy.settings = settings
        return greedy

    def sample(logits: mx.array, key: mx.array | None = None) -> mx.array:
        logits = logits / temperature
        if 0 < top_k < logits.shape[-1]:
            logits = _keep_top_k(logits, top_k)
        if 0 < top_p < 1:
            logits = _keep_top_p(logits, top_p)
        return mx.random.categorical(logits, axis=-1, key=key).astype(mx.int32)

    sample.settings = settings
    return sample


def _keep_top_k(logits: mx.array, k: int) -> mx.array:
    kth = mx.min(mx.topk(logits, k, axis=-1), axis=-1, keepdims=True)
    return mx.where(logits < kth, -mx.inf, logits)


def _keep_top_p(logits: mx.array, p: float) -> mx.array:
    order = mx.argsort(logits, axis=-1)  # ascending
    sorted_logits = mx.take_along_axis(logits, order, axis=-1)
    cumulative = mx.cumsum(mx.softmax(sorted_logits, axis=-1), axis=-1)
    drop_sorted = cumulative <= 1 - p
    drop_sorted[..., -1] = False  # always keep the most likely code
    drop = mx.put_along_axis(mx.zeros_like(drop_sorted), order, drop_sorted, axis=-1)
    return mx.where(drop, -mx.inf, logits)
