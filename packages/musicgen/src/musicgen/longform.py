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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from musicgen.decoder import MusicGenDecoder
from musicgen.delay import num_steps
from musicgen.errors import InvalidArgumentError
from musicgen.generate import GenerationStep, generate_step
from musicgen.melody import MelodyDecoder
from musicgen.options import EXTEND_STRIDE, MAX_DURATION, TRAINED_DURATION
from musicgen.sampling import Sampler

if TYPE_CHECKING:
    from musicgen.chroma import ChromaExtractor

LONGFORM_MAX_DURATION = MAX_DURATION  # the former name of musicgen.MAX_DURATION
TextStates = tuple[mx.array, mx.array]  # decoder-width text states (B, S, D), mask (B, S)

__all__ = [
    "EXTEND_STRIDE",
    "LONGFORM_MAX_DURATION",
    "TRAINED_DURATION",
    "MelodyClips",
    "Window",
    "check_prompt_codes",
    "generation_steps",
    "plan_windows",
    "stride_frames",
]


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


def stride_frames(extend_stride: float | None, window: float, frame_rate: float) -> int:
    """Frames a window moves on: ``extend_stride`` seconds (checked by GenerationOptions), by
    default 18 s of every 30 s of ``window``."""
    if extend_stride is None:
        extend_stride = window * EXTEND_STRIDE / TRAINED_DURATION
    return max(1, round(extend_stride * frame_rate))


def check_prompt_codes(
    codes: mx.array | None, batch: int, max_frames: int, frame_rate: float
) -> mx.array | None:
    """Checked codes (1 or batch, K, P) -> (batch, K, P); P must be below ``max_frames`` (the
    duration and one window)."""
    if codes is None:
        return None
    if codes.shape[0] not in (1, batch):
        raise InvalidArgumentError(
            f"the audio prompt has batch size {codes.shape[0]} for {batch} text prompts; give "
            "one audio prompt for all text prompts or one per prompt."
        )
    if codes.shape[2] >= max_frames:
        raise InvalidArgumentError(
            f"the audio prompt ({codes.shape[2] / frame_rate:.2f} s) must be shorter than "
            f"the duration and than one window ({max_frames / frame_rate:.2f} s here): "
            "trim it or ask for a longer duration."
        )
    return mx.broadcast_to(codes, (batch, *codes.shape[1:]))


@dataclass(frozen=True)
class MelodyClips:
    """One melody clip per prompt, mono at the extractor's rate, and what each window reads.

    ``window`` None: the clips as given (a piece of one window). Otherwise (long-form) the
    clips are tiled and a window starting at frame f reads ``window`` seconds from f on.
    """

    extractor: ChromaExtractor
    clips: list[np.ndarray]
    frame_rate: float
    window: float | None = None

    def chroma(self, start_frame: int) -> mx.array:
        rate = self.extractor.sampling_rate
        if self.window is None:
            waves = [clip[0] for clip in self.clips]
        else:
            first = int(start_frame / self.frame_rate * rate)
            positions = np.arange(first, first + int(self.window * rate))
            waves = [clip[0][positions % clip.shape[1]] for clip in self.clips]
        return mx.array(self.extractor(waves))


def generation_steps(
    decoder: MusicGenDecoder | MelodyDecoder,
    text: Callable[[], TextStates],
    windows: list[Window],
    *,
    delays: list[int],
    guidance_scale: float,
    sampler: Sampler,
    key: mx.array,
    prompt_codes: mx.array | None = None,
    melody: MelodyClips | None = None,
) -> Iterator[GenerationStep]:
    """One GenerationStep per decoding step, numbered across ``windows``; the frames they
    carry, in order, are the frames after ``prompt_codes`` (B, K, P).

    ``text()`` gives the conditional text states when the first step runs; ``melody`` (and a
    MelodyDecoder) conditions each window on its part of the melody.
    """
    states, mask = text()
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
        if isinstance(decoder, MelodyDecoder):
            chroma = None if melody is None else melody.chroma(w.start)
            cond_states, cond_mask, unconditional = decoder.conditioning(states, chroma)
        for step in generate_step(
            decoder,
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
