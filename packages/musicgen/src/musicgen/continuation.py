"""Audio continuation: an audio prompt, coded by the EnCodec encoder, starts the piece.

As transformers' ``generate(input_values=...)`` and audiocraft's ``generate_continuation``:
the prompt's codes go through the delay pattern as the decoder's first input, and generation
carries on from the frame after them. The result holds the prompt (as EnCodec re-codes it:
``decode(encode(audio))``, not the original samples) followed by the continuation.

Stereo models code the left and right channels apart and interleave their codebooks, as
transformers does. A mono prompt given to a stereo model is used for both channels; a stereo
prompt given to a mono model is mixed down (the mean), as audiocraft's ``convert_audio``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from musicgen.audio_input import prepare_audio
from musicgen.errors import InvalidArgumentError
from musicgen.generate import check_prompts

if TYPE_CHECKING:
    from musicgen.model import MusicGen


def encode_audio(model: MusicGen, audio, sample_rate: int | None, *, batch: int = 1) -> mx.array:
    """Audio (see ``audio_input.prepare_audio``) -> codes (batch, K, ceil(samples / hop))."""
    clips = prepare_audio(
        audio,
        sample_rate,
        target_rate=model.sample_rate,
        channels=model.audio_channels,
        batch=batch,
        what="audio prompt",
    )
    lengths = sorted({clip.shape[1] for clip in clips})
    if len(lengths) > 1:
        raise InvalidArgumentError(
            f"the audio prompts of one batch must have the same length, got {lengths} samples "
            f"at {model.sample_rate} Hz; trim them to the shortest."
        )
    waves = mx.array(np.stack(clips))  # (B, channels, samples)
    if model.audio_channels == 1:
        codes = model.codec.encode(waves)
    else:
        left, right = model.codec.encode(waves[:, :1]), model.codec.encode(waves[:, 1:])
        codes = mx.stack([left, right], axis=2).reshape(batch, -1, left.shape[2])
    mx.eval(codes)
    return codes


def continuation_codes(
    model: MusicGen, prompt_audio, sample_rate: int | None, prompts: str | Sequence[str]
) -> mx.array:
    """The codes of the audio prompt, one row per text prompt."""
    prompts = check_prompts(prompts)
    if prompt_audio is None:
        raise InvalidArgumentError(
            "prompt_audio is missing: give the audio (a file path or an array) to continue."
        )
    return encode_audio(model, prompt_audio, sample_rate, batch=len(prompts))
