"""One generate call for many jobs, each sampled with its own seed.

``model.stream_tokens(prompts, seed=[...])`` samples row b as a batch of one with seed b would,
so a job's codes depend on its prompt and seed only, not on the batch it ran in, and the
compiled decoding step, long-form windows and melody checkpoints all serve batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict

import mlx.core as mx

from musicgen.model import MusicGen
from musicgen.plugin.tool import Sampling

OnStep = Callable[[float], None]  # fraction of the batch's steps done


def generate_codes(
    model: MusicGen,
    prompts: Sequence[str],
    seeds: Sequence[int],
    sampling: Sampling,
    on_step: OnStep | None = None,
) -> mx.array:
    """Codes (B, K, T) for the prompts, job b sampled with ``seeds[b]``."""
    report = on_step or (lambda fraction: None)
    frames = []
    for step in model.stream_tokens(list(prompts), seed=list(seeds), **asdict(sampling)):
        if step.frame is not None:
            frames.append(step.frame)
        report((step.index + 1) / step.num_steps)
    codes = mx.stack(frames, axis=-1)
    mx.eval(codes)
    return codes
