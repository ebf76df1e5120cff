"""One generate call for many jobs, each sampled with its own seed.

``MusicGen.generate_tokens(prompts, seed=s)`` draws the codes of the whole batch from one key,
so a prompt's music would depend on which other prompts share its batch. Here every job keeps
its own key, split once per step exactly as ``generate_step`` splits the batch key, so a job's
codes do not depend on the batch it ran in, and a batch of one gives the same codes as
``model.generate_tokens(prompt, seed=seed)``. The per-job keys live in the sampler, so
``generate_step`` runs its uncompiled path (a compiled step would freeze them).

Pieces longer than one window (long-form) and melody checkpoints go through
``model.stream_tokens`` one job at a time, which gives the same codes per job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict

import mlx.core as mx

from musicgen.delay import codebook_delays
from musicgen.generate import check_options, check_prompts, generate_step
from musicgen.model import MusicGen
from musicgen.plugin.tool import Sampling
from musicgen.sampling import Sampler, make_sampler

OnStep = Callable[[float], None]  # fraction of the batch's steps done


def per_job_sampler(sampler: Sampler, seeds: Sequence[int], num_codebooks: int) -> Sampler:
    """A sampler for (B x K, V) logits that draws job b's K rows with job b's own key."""
    keys = [mx.random.key(seed) for seed in seeds]

    def sample(logits: mx.array, key: mx.array | None = None) -> mx.array:
        codes = []
        for b in range(len(keys)):
            keys[b], step_key = mx.random.split(keys[b])
            codes.append(sampler(logits[b * num_codebooks: (b + 1) * num_codebooks], step_key))
        return mx.concatenate(codes)

    return sample


def batched(model: MusicGen, sampling: Sampling) -> bool:
    """Whether jobs with these options can share one generate call."""
    return sampling.duration <= model.max_duration and not model.config.is_melody


def generate_codes(
    model: MusicGen,
    prompts: Sequence[str],
    seeds: Sequence[int],
    sampling: Sampling,
    on_step: OnStep | None = None,
) -> mx.array:
    """Codes (B, K, T) for the prompts, job b sampled with ``seeds[b]``."""
    prompts = check_prompts(list(prompts))
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds.")
    for seed in seeds:
        sampling.check(seed)
    report = on_step or (lambda fraction: None)
    if not batched(model, sampling):
        codes = []
        for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
            frames = []
            for step in model.stream_tokens(prompt, seed=seed, **asdict(sampling)):
                if step.frame is not None:
                    frames.append(step.frame)
                report((i + (step.index + 1) / step.num_steps) / len(prompts))
            codes.append(mx.stack(frames, axis=-1))
        return _evaluated(mx.concatenate(codes))
    num_frames = check_options(**asdict(sampling), seed=None, frame_rate=model.frame_rate)
    states, mask = model.encode_text(prompts)
    sampler = make_sampler(sampling.temperature, sampling.top_k, sampling.top_p)
    frames = []
    for step in generate_step(
        model.decoder,
        states,
        mask,
        num_frames=num_frames,
        guidance_scale=sampling.guidance_scale,
        sampler=per_job_sampler(sampler, seeds, model.num_codebooks),
        delays=codebook_delays(model.num_codebooks, model.audio_channels),
        compile=False,
    ):
        if step.frame is not None:
            frames.append(step.frame)
        report((step.index + 1) / step.num_steps)
    return _evaluated(mx.stack(frames, axis=-1))


def _evaluated(codes: mx.array) -> mx.array:
    mx.eval(codes)
    return codes
