"""One generate call for many jobs, each sampled with its own seed.

``MusicGen.generate_tokens(prompts, seed=s)`` draws the codes of the whole batch from one key,
so a prompt's music would depend on which other prompts share its batch. Here every job keeps
its own key, split once per step exactly as ``generate_step`` splits the batch key, so a job's
codes do not depend on the batch it ran in, and a batch of one gives the same codes as
``model.generate_tokens(prompt, seed=seed)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import mlx.core as mx
from musicgen.delay import codebook_delays
from musicgen.generate import GenerationStep, check_options, check_prompts, generate_step
from musicgen.model import MusicGen
from musicgen.sampling import Sampler, make_sampler


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


def stream_jobs(
    model: MusicGen,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    duration: float,
    guidance_scale: float,
    top_k: int,
    top_p: float,
    temperature: float,
) -> Iterator[GenerationStep]:
    """``model.stream_tokens`` with one seed per prompt."""
    prompts = check_prompts(list(prompts))
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds.")
    for seed in seeds:
        check_options(duration=duration, guidance_scale=guidance_scale, top_k=top_k, top_p=top_p,
                      temperature=temperature, seed=seed)
    num_frames = check_options(duration=duration, guidance_scale=guidance_scale, top_k=top_k,
                               top_p=top_p, temperature=temperature, seed=None,
                               frame_rate=model.frame_rate)
    states, mask = model.encode_text(prompts)
    sampler = per_job_sampler(make_sampler(temperature, top_k, top_p), seeds,
                              model.num_codebooks)
    return generate_step(
        model.decoder,
        states,
        mask,
        num_frames=num_frames,
        guidance_scale=guidance_scale,
        sampler=sampler,
        delays=codebook_delays(model.num_codebooks, model.audio_channels),
    )


def collect_codes(steps: Iterator[GenerationStep]) -> mx.array:
    """The codes (B, K, T) of a finished step stream."""
    codes = mx.stack([step.frame for step in steps if step.frame is not None], axis=-1)
    mx.eval(codes)
    return codes
