"""Choosing the next code from logits: greedy, or temperature + top-k + top-p + min-p sampling."""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx

from musicgen.options import DEFAULTS

Sampler = Callable[[mx.array, mx.array | None], mx.array]


def make_sampler(
    temperature: float = DEFAULTS.temperature,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    min_p: float = DEFAULTS.min_p,
) -> Sampler:
    """A function (logits (N, V) float32, key) -> codes (N,) int32.

    ``temperature=0`` or ``top_k=1`` is greedy (argmax; the key is unused). Otherwise logits
    are divided by the temperature, restricted to the ``top_k`` largest (0 = no limit), then to
    the smallest set whose probability reaches ``top_p`` (0 or 1 = no limit), in that order, as
    transformers applies them; then ``min_p`` (0 = off) drops every code less than ``min_p``
    times as likely as the most likely one. As in mlx-lm's make_sampler, min-p comes after
    top-p and compares the untempered probabilities (the model's own), so the codes it keeps do
    not depend on the temperature. One code is drawn per row with ``key``. The defaults are
    GenerationOptions'.

    The sampler's ``settings`` attribute holds these arguments (the fused CUDA step,
    ``musicgen.kernels.sample``, draws the same codes from them).
    """
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
    if temperature == 0 or top_k == 1:

        def greedy(logits: mx.array, key: mx.array | None = None) -> mx.array:
            return mx.argmax(logits, axis=-1).astype(mx.int32)

        greedy.settings = settings
        return greedy

    def sample(logits: mx.array, key: mx.array | None = None) -> mx.array:
        unlikely = _below_min_p(logits, min_p) if min_p > 0 else None
        logits = logits / temperature
        if 0 < top_k < logits.shape[-1]:
            logits = _keep_top_k(logits, top_k)
        if 0 < top_p < 1:
            logits = _keep_top_p(logits, top_p)
        if unlikely is not None:
            logits = mx.where(unlikely, -mx.inf, logits)
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


def _below_min_p(logits: mx.array, p: float) -> mx.array:
    """Where a code's probability is below ``p`` times the largest: p_i < p x p_max, that is
    logit_i < max logit + log(p) (the most likely code always stays)."""
    return logits < mx.max(logits, axis=-1, keepdims=True) + math.log(p)
