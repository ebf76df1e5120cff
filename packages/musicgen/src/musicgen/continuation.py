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

import mlx.core as mx
import numpy as np

from musicgen.audio_input import prepare_audio
from musicgen.encodec import EncodecModel
from musicgen.errors import InvalidArgumentError


def encode_audio(
    codec: EncodecModel, audio, sample_rate: int | None, *, channels: int = 1, batch: int = 1
) -> mx.array:
    """Audio (see ``audio_input.prepare_audio``) -> codes (batch, channels x K, frames), K the
    codec's ``num_codebooks``, frames = ceil(samples / hop); ``channels`` 2 interleaves the
    left and right codebooks."""
    clips = prepare_audio(
        audio,
        sample_rate,
        target_rate=codec.sampling_rate,
        channels=channels,
        batch=batch,
        what="audio prompt",
    )
    lengths = sorted({clip.shape[1] for clip in clips})
    if len(lengths) > 1:
        raise InvalidArgumentError(
            f"the audio prompts of one batch must have the same length, got {lengths} samples "
            f"at {codec.sampling_rate} Hz; trim them to the shortest."
        )
    waves = mx.array(np.stack(clips))  # (B, channels, samples)
    if channels == 1:
        codes = codec.encode(waves)
    else:
        left, right = codec.encode(waves[:, :1]), codec.encode(waves[:, 1:])
        codes = mx.stack([left, right], axis=2).reshape(batch, -1, left.shape[2])
    mx.eval(codes)
    return codes
