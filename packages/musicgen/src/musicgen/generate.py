"""Autoregressive generation of codes, one step at a time, with classifier-free guidance.

``generate_step`` is a generator: progress bars, streaming and early stopping hang off it
without touching the model. Guidance follows transformers' MusicGen: the conditional and the
unconditional (all-zero text states, all-zero mask) branches run as one batch and the logits
are combined as ``uncond + (cond - uncond) * guidance_scale``; ``guidance_scale == 1`` gives the
conditional logits exactly and skips the unconditional branch.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import mlx.core as mx

from musicgen import kernels
from musicgen.decoder import MusicGenDecoder, cross_attention_bias, needs_cross_bias
from musicgen.delay import apply_delay, num_steps
from musicgen.errors import InvalidArgumentError
from musicgen.options import DEFAULTS, MAX_DURATION, check_options
from musicgen.sampling import Sampler

__all__ = [
    "MAX_DURATION",  # re-exported from musicgen.options, where the options are defined
    "GenerationStep",
    "check_options",
    "check_prompts",
    "generate_step",
    "known_tokens",
    "random_key",
]


@dataclass(frozen=True)
class GenerationStep:
    """What one decoding step produced.

    ``tokens`` (B, K) are the codes written at position ``index + 1`` of the delayed sequence
    (the special token where the delay pattern pads). ``frame`` (B, K) is the frame this step
    completed, delay undone, or None during the first max-delay steps; the frames in order are
    the generated codes.
    """

    index: int
    num_steps: int
    tokens: mx.array
    frame: mx.array | None


def generate_step(
    decoder: MusicGenDecoder,
    text_states: mx.array,
    text_mask: mx.array,
    *,
    num_frames: int,
    guidance_scale: float = DEFAULTS.guidance_scale,
    sampler: Sampler,
    key: mx.array | None = None,
    delays: Sequence[int] | None = None,
    prompt: mx.array | None = None,
    unconditional: tuple[mx.array, mx.array] | None = None,
    compile: bool = True,
) -> Iterator[GenerationStep]:
    """Yield one GenerationStep per decoding step until ``num_frames`` frames are complete.

    ``text_states`` (B, S, D) are the conditional decoder-width states (``project_text``) and
    ``text_mask`` (B, S) their padding mask. ``unconditional`` (states, mask) replaces the
    all-zero states of the unconditional branch (MusicGen-Melody's null chroma).

    ``prompt`` (B, K, P) codes, delay undone, are the first P of the ``num_frames`` frames (audio
    continuation): the first step feeds them through the delay pattern in one call, as
    transformers' ``decoder_input_ids``, where a prompt code falls in a later position it is
    written instead of sampled, and only the frames after the prompt are yielded.

    ``key`` is one mx.random key (2,) for the whole batch, or one per row (B, 2): then row b
    draws exactly what a batch of one with ``key[b]`` draws, whatever else is in the batch.

    ``compile`` (the default) runs each step as two compiled functions, the decoder's pass over
    a fixed-shape cache and the choice of the next tokens, with nothing read back to the host;
    ``compile=False`` is the plain reference path (growable cache, no compilation). Both give
    the same tokens.
    """
    config = decoder.config
    delays = list(delays or range(config.num_codebooks))
    special = config.special_token_id
    batch, K = text_states.shape[0], config.num_codebooks
    start = 0 if prompt is None else prompt.shape[2]
    if not 0 <= start < num_frames:
        raise InvalidArgumentError(
            f"the prompt has {start} frames; num_frames must be larger, got {num_frames}."
        )
    total = num_steps(num_frames - start, delays)
    guided = guidance_scale != 1
    if guided:
        null_states, null_mask = unconditional or (
            mx.zeros_like(text_states),
            mx.zeros_like(text_mask),
        )
        text_states = mx.concatenate([text_states, null_states])
        text_mask = mx.concatenate([text_mask, null_mask])
    cross_kv = decoder.cross_kv(text_states)
    cross_bias = None
    if needs_cross_bias(text_states, text_mask):
        cross_bias = cross_attention_bias(text_mask, text_states.dtype)
    static = compile and hasattr(decoder, "make_static_cache")
    if static:
        cache = decoder.make_static_cache(start + total)
    else:
        cache = decoder.make_cache(start + total)
    # The one-kernel step runs one generation at a time per process (kernels.exclusive_steps).
    one_kernel = static and getattr(decoder, "step_layers", None) is not None
    if one_kernel:
        cross_kv = decoder.fold_cross_kv(cross_kv)
    known = known_tokens(prompt, batch, num_frames, delays, special)
    key = key if key is not None else random_key()
    if key.ndim == 2 and key.shape[0] != batch:
        raise InvalidArgumentError(f"got {key.shape[0]} keys for a batch of {batch}.")

    def choose(logits: mx.array, key: mx.array, fixed: mx.array) -> tuple[mx.array, mx.array]:
        """Guided logits (2B or B, K, L, V) -> the next tokens (B, K) and the next key."""
        # One key per step, split off in turn: a longer run starts with the same codes.
        logits = logits[:, :, -1].astype(mx.float32)
        if guided:
            cond, uncond = logits[:batch], logits[batch:]
            logits = uncond + (cond - uncond) * guidance_scale
        if key.ndim == 1:
            key, step_key = mx.random.split(key)
            codes = sampler(logits.reshape(batch * K, -1), step_key).reshape(batch, K)
        else:  # per-row keys: row b is split and drawn as a batch of one with key[b]
            splits = [mx.random.split(row) for row in key]
            key = mx.stack([split[0] for split in splits])
            codes = mx.stack([sampler(logits[b], split[1]) for b, split in enumerate(splits)])
        return mx.where(fixed >= 0, fixed, codes), key

    fused = fused_choice(sampler, config.vocab_size, guidance_scale if guided else None)
    if static:
        choose = mx.compile(fused or choose)

    def next_tokens(inputs: mx.array, position: int) -> mx.array:
        """The tokens at ``position`` of the delayed sequence, after feeding ``inputs``."""
        nonlocal key
        if guided:
            inputs = mx.concatenate([inputs, inputs])
        logits = decoder(inputs, cross_kv, cross_bias, cache)
        tokens, key = choose(logits, key, known[:, :, position])
        return tokens

    with kernels.exclusive_steps() if one_kernel else nullcontext(kernels.Issued()) as issued:
        history = [known[:, :, p] for p in range(start + 1)]  # the delayed sequence, by position
        tokens = issued.last = next_tokens(known[:, :, : start + 1], start + 1)
        mx.async_eval(tokens)
        for step in range(total):
            position = start + 1 + step
            if step + 1 < total:
                upcoming = issued.last = next_tokens(tokens[:, :, None], position + 1)
                mx.async_eval(upcoming)
            history.append(tokens)
            frame = position - 1 - max(delays)
            done = None
            if frame >= start:
                done = mx.stack([history[frame + d + 1][:, k] for k, d in enumerate(delays)], 1)
            yield GenerationStep(step, total, tokens, done)
            if step + 1 < total:
                tokens = upcoming


def fused_choice(sampler, vocab: int, guidance_scale: float | None):
    """``choose`` as one CUDA kernel (``musicgen.kernels.sample``: guidance, temperature, top-k,
    the draw and the key split), where the kernels run and it draws what ``sampler`` draws;
    else None."""
    settings = getattr(sampler, "settings", None)
    if not kernels.available() or not kernels.sampler_fits(settings, vocab):
        return None

    def choose(logits: mx.array, key: mx.array, fixed: mx.array) -> tuple[mx.array, mx.array]:
        rows, codebooks, length, _ = logits.shape
        last = logits.reshape(rows, codebooks, -1) if length == 1 else logits[:, :, -1]
        return kernels.sample(
            last.astype(mx.float32),
            key,
            fixed,
            guidance_scale=guidance_scale,
            temperature=settings["temperature"],
            top_k=settings["top_k"],
        )

    return choose


def known_tokens(
    prompt: mx.array | None, batch: int, num_frames: int, delays: list[int], special: int
) -> mx.array:
    """(B, K, 1 + steps) int32 delayed sequence of what is fixed before sampling: the special
    token where the delay pattern pads, the prompt's codes, and -1 where a code is sampled."""
    codes = mx.full((batch, len(delays), num_frames), -1, mx.int32)
    if prompt is not None:
        codes[:, :, : prompt.shape[2]] = prompt.astype(mx.int32)
    return apply_delay(codes, delays, special)


def random_key(seed: int | Sequence[int] | None = None) -> mx.array:
    """An mx.random key (2,) from ``seed``, or from the OS's entropy when ``seed`` is None;
    a sequence of seeds gives one key per row (B, 2)."""
    if isinstance(seed, Sequence):
        return mx.stack([mx.random.key(s) for s in seed])
    return mx.random.key(secrets.randbits(63) if seed is None else seed)


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """A prompt or a list of prompts -> list of non-empty strings; ValueError otherwise."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or isinstance(prompts, bytes):
        raise InvalidArgumentError(
            f"prompts must be a string or a list of strings, got {type(prompts).__name__}."
        )
    prompts = list(prompts)
    if not prompts:
        raise InvalidArgumentError("prompts is empty: give at least one text prompt.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidArgumentError(f"prompt {i} must be a string, got {type(prompt).__name__}.")
        if not prompt.strip():
            raise InvalidArgumentError(
                f"prompt {i} is empty: describe the music to generate, e.g. 'lofi piano, rain'."
            )
    return prompts
