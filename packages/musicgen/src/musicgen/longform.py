"""The generation behind every MusicGen method: text, melody and audio prompt in, steps out.

Up to 30 s (the length MusicGen was trained on) this is one run of ``generate_step``. Longer
pieces are generated in windows, with audiocraft's ``extend_stride`` semantics: window w starts
``w x extend_stride`` seconds in and lasts min(30 s, what is left); its first 30 - extend_stride
seconds are the last frames of the window before, fed back as an audio prompt, and only the
frames after them are new. The decoder's cache never holds more than one window, so memory
stays bounded however long the piece. A melody is tiled and each window reads the 30 s of it
that start where the window starts, as audiocraft does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from musicgen.audio_input import prepare_audio
from musicgen.delay import codebook_delays, num_steps
from musicgen.errors import InvalidArgumentError
from musicgen.generate import (
    GenerationStep,
    check_options,
    check_prompts,
    generate_step,
    random_key,
)
from musicgen.sampling import make_sampler

if TYPE_CHECKING:
    from musicgen.model import MusicGen

TRAINED_DURATION = 30.0  # seconds: the clips every MusicGen checkpoint was trained on
EXTEND_STRIDE = 18.0  # seconds a window moves on from the one before (audiocraft's default)
LONGFORM_MAX_DURATION = 3600.0  # seconds; the single-window cap is TRAINED_DURATION


@dataclass(frozen=True)
class Window:
    """Frames [start, start + length) of the piece; the first ``context`` are already known."""

    start: int
    context: int
    length: int


def plan_windows(
    num_frames: int, window_frames: int, stride_frames: int, prompt_frames: int = 0
) -> list[Window]:
    """The windows that generate ``num_frames`` frames after a prompt of ``prompt_frames``.

    Every window but the first re-feeds the last ``window_frames - stride_frames`` frames of the
    one before; the new frames of all windows follow each other without gap or overlap.
    """
    windows = []
    start, context = 0, prompt_frames
    while start + context < num_frames:
        length = min(num_frames - start, window_frames)
        windows.append(Window(start, context, length))
        context = max(0, length - stride_frames)
        start += stride_frames
    return windows


def generation_steps(
    model: MusicGen,
    prompts: str | Sequence[str],
    *,
    duration: float,
    guidance_scale: float,
    top_k: int,
    top_p: float,
    temperature: float,
    seed: int | Sequence[int] | None,
    melody=None,
    melody_sample_rate: int | None = None,
    prompt_codes: mx.array | None = None,
    extend_stride: float | None = None,
) -> Iterator[GenerationStep]:
    """One GenerationStep per decoding step, numbered across windows; the frames they carry,
    in order, are the frames after ``prompt_codes`` (B, K, P), up to ``duration`` seconds.

    Every argument is checked, and a melody read and resampled, before this returns.
    """
    prompts = check_prompts(prompts)
    num_frames = check_options(
        duration=duration,
        guidance_scale=guidance_scale,
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        seed=seed,
        frame_rate=model.frame_rate,
        max_duration=LONGFORM_MAX_DURATION,
        num_prompts=len(prompts),
    )
    window_frames = round(model.max_duration * model.frame_rate)
    if extend_stride is None:  # 18 s of 30, for any window length
        extend_stride = model.max_duration * EXTEND_STRIDE / TRAINED_DURATION
    stride_frames = _stride_frames(extend_stride, model.max_duration, model.frame_rate)
    batch = len(prompts)
    prompt_codes = _check_prompt_codes(model, prompt_codes, batch, min(num_frames, window_frames))
    prompt_frames = 0 if prompt_codes is None else prompt_codes.shape[2]
    windows = plan_windows(num_frames, window_frames, stride_frames, prompt_frames)
    clips = None
    if melody is not None:
        if not model.config.is_melody:
            raise InvalidArgumentError(
                "melody conditioning needs a MusicGen-Melody checkpoint (e.g. "
                "facebook/musicgen-melody); this model conditions on text only."
            )
        clips = prepare_audio(
            melody,
            melody_sample_rate,
            target_rate=model.chroma.sampling_rate,
            channels=1,
            batch=batch,
            what="melody",
        )
    return _steps(
        model,
        prompts,
        windows,
        long=num_frames > window_frames,
        clips=clips,
        prompt_codes=prompt_codes,
        guidance_scale=guidance_scale,
        sampler=make_sampler(temperature, top_k, top_p),
        key=random_key(seed),
    )


def _steps(model, prompts, windows, *, long, clips, prompt_codes, guidance_scale, sampler, key):
    states, mask = model.encode_text(prompts)
    delays = codebook_delays(model.num_codebooks, model.audio_channels)
    # The frames from the current window's start on (earlier ones are never read again).
    history = [] if prompt_codes is None else list(mx.moveaxis(prompt_codes, 2, 0))
    first = 0  # the frame history[0] holds
    total = sum(num_steps(w.length - w.context, delays) for w in windows)
    index = 0
    for w, window_key in zip(windows, _window_keys(key), strict=False):
        del history[: w.start - first]
        first = w.start
        context = mx.stack(history[: w.context], axis=-1) if w.context else None
        unconditional = None
        cond_states, cond_mask = states, mask
        if model.config.is_melody:
            chroma = None
            if clips is not None:
                chroma = _chroma(model, clips, w.start if long else None)
            cond_states, cond_mask, unconditional = model.decoder.conditioning(states, chroma)
        for step in generate_step(
            model.decoder,
            cond_states,
            cond_mask,
            num_frames=w.length,
            guidance_scale=guidance_scale,
            sampler=sampler,
            key=window_key,
            delays=delays,
            prompt=context,
            unconditional=unconditional,
        ):
            if step.frame is not None:
                history.append(step.frame)
            yield GenerationStep(index, total, step.tokens, step.frame)
            index += 1


def _window_keys(key: mx.array) -> Iterator[mx.array]:
    """The first window samples with ``key`` itself (so a piece of up to 30 s is sampled as by
    generate_step alone); later windows with keys from a chain no step key comes from.
    Per-row keys (B, 2) each follow their own chain, as in a batch of one."""
    if key.ndim == 2:
        for keys in zip(*(_window_keys(row) for row in key)):  # noqa: B905 (endless)
            yield mx.stack(keys)
        return
    yield key
    chain = mx.random.split(key, 3)[2]
    while True:
        chain, window_key = mx.random.split(chain)
        yield window_key


def _chroma(model: MusicGen, clips: list[np.ndarray], start_frame: int | None) -> mx.array:
    """The melody chroma of a window: the clips as given, or (long-form) the trained duration
    of the tiled clips from the window's start."""
    rate = model.chroma.sampling_rate
    if start_frame is None:
        waves = [clip[0] for clip in clips]
    else:
        first = int(start_frame / model.frame_rate * rate)
        positions = np.arange(first, first + int(model.max_duration * rate))
        waves = [clip[0][positions % clip.shape[1]] for clip in clips]
    return mx.array(model.chroma(waves))


def _stride_frames(extend_stride: float, window: float, frame_rate: float) -> int:
    if isinstance(extend_stride, bool) or not isinstance(extend_stride, (int, float)):
        raise InvalidArgumentError(f"extend_stride must be a number, got {extend_stride!r}.")
    if not 0 < extend_stride < window or not math.isfinite(extend_stride):
        raise InvalidArgumentError(
            f"extend_stride must be between 0 and {window:g} seconds (18 is typical: each "
            f"window re-feeds the last {window:g} - extend_stride seconds), got {extend_stride}."
        )
    return max(1, round(extend_stride * frame_rate))


def _check_prompt_codes(
    model: MusicGen, codes, batch: int, max_frames: int
) -> mx.array | None:
    if codes is None:
        return None
    codes = model._check_codes(codes)
    if codes.shape[0] not in (1, batch):
        raise InvalidArgumentError(
            f"the audio prompt has batch size {codes.shape[0]} for {batch} text prompts; give "
            "one audio prompt for all text prompts or one per prompt."
        )
    if codes.shape[2] >= max_frames:
        raise InvalidArgumentError(
            f"the audio prompt ({codes.shape[2] / model.frame_rate:.2f} s) must be shorter than "
            f"the duration and than one window ({max_frames / model.frame_rate:.2f} s here): "
            "trim it or ask for a longer duration."
        )
    return mx.broadcast_to(codes, (batch, *codes.shape[1:]))
