"""Codes: checking them, and gathering generation steps into them.

``codes_from_steps`` is the one way from ``GenerationStep``s to codes (B, K, T): every caller
that drives the steps itself (a progress bar, a batch runner, a server) gets the same codes as
``MusicGen.generate_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import mlx.core as mx

from musicgen.errors import InvalidArgumentError
from musicgen.generate import GenerationStep

Progress = Callable[[int, int], None]  # (steps done, steps in all)


def check_codes(codes: Any, num_codebooks: int, vocab_size: int, *,
                values: bool = True) -> mx.array:
    """Codes (batch, num_codebooks, frames) with values in [0, vocab_size), as int32.

    Anything else raises InvalidArgumentError saying what is expected. ``values=False`` checks
    the shape and the type only, for a caller whose next step checks the values (reading them
    back from the device is what costs).
    """
    codes = mx.array(codes) if not isinstance(codes, mx.array) else codes
    if codes.ndim != 3 or codes.shape[1] != num_codebooks or codes.shape[2] < 1:
        raise InvalidArgumentError(
            f"codes must have shape (batch, {num_codebooks}, frames), got {tuple(codes.shape)}."
        )
    if not mx.issubdtype(codes.dtype, mx.integer):
        raise InvalidArgumentError(f"codes must be integers, got {codes.dtype}.")
    if values and codes.size and (mx.min(codes).item() < 0 or mx.max(codes).item() >= vocab_size):
        raise InvalidArgumentError(f"codes must lie in [0, {vocab_size}).")
    return codes.astype(mx.int32)


def report_steps(
    steps: Iterable[GenerationStep], progress: Progress | None
) -> Iterator[GenerationStep]:
    """``steps``, each reported to ``progress(done, total)`` as it arrives (raising there
    stops the generation)."""
    for step in steps:
        if progress is not None:
            progress(step.index + 1, step.num_steps)
        yield step


def codes_from_steps(
    steps: Iterable[GenerationStep],
    prompt_codes: mx.array | None = None,
    *,
    progress: Progress | None = None,
) -> mx.array:
    """Run ``steps`` to the end; return their frames stacked (B, K, T) int32, evaluated.

    ``prompt_codes`` (1 or B, K, P), the codes the steps continue (already checked), come
    first. ``progress(done, total)`` is called after every step.
    """
    frames = [step.frame for step in report_steps(steps, progress) if step.frame is not None]
    codes = mx.stack(frames, axis=-1)
    if prompt_codes is not None:
        prompt = mx.broadcast_to(prompt_codes, (codes.shape[0], *prompt_codes.shape[1:]))
        codes = mx.concatenate([prompt.astype(codes.dtype), codes], axis=-1)
    mx.eval(codes)
    return codes
