"""Streaming audio: codes decoded a few frames at a time while the decoder generates the rest.

A frame is final once the delay pattern has let every codebook write it (GenerationStep.frame);
frames are gathered into chunks of ``chunk_frames`` and pushed through EnCodec's
StreamingDecoder (one per channel for stereo models, whose codebooks interleave left and right),
which returns the audio that no later frame can change. Concatenating the chunks gives the
audio of ``MusicGen.decode`` on all the codes, up to float rounding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np

from musicgen.codes import check_codes
from musicgen.encodec import EncodecModel
from musicgen.errors import AudioError, InvalidArgumentError
from musicgen.generate import GenerationStep

CHUNK_FRAMES = 50  # one second at MusicGen's 50 frames per second


def check_chunk_frames(chunk_frames: int) -> int:
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise InvalidArgumentError(
            f"chunk_frames must be a positive integer (50 frames = 1 s), got {chunk_frames!r}."
        )
    return chunk_frames


def frame_chunks(
    steps: Iterable[GenerationStep], chunk_frames: int, prompt_codes: mx.array | None = None
) -> Iterator[mx.array]:
    """Codes (B, K, <= chunk_frames) as generation completes them; the prompt's codes first."""
    if prompt_codes is not None:
        yield prompt_codes
    pending = []
    for step in steps:
        if step.frame is not None:
            pending.append(step.frame)
        if len(pending) == chunk_frames:
            yield mx.stack(pending, axis=-1)
            pending = []
    if pending:
        yield mx.stack(pending, axis=-1)


def decode_chunks(
    codec: EncodecModel, chunks: Iterable[mx.array], num_codebooks: int, channels: int = 1
) -> Iterator[mx.array]:
    """Audio chunks (B, channels, samples) float32 for code chunks (B, num_codebooks, frames),
    in order; ``channels`` 2: the codebooks interleave left and right (stereo MusicGen).

    Chunks with no samples yet (the codec's look-ahead) are not yielded.
    """
    decoders = [codec.stream_decoder() for _ in range(channels)]
    vocab = codec.config.codebook_size
    for codes in chunks:
        codes = check_codes(codes, num_codebooks, vocab, values=False)  # push checks values
        audio = _joined([d.push(codes[:, c::channels]) for c, d in enumerate(decoders)])
        if audio.shape[2]:
            yield audio
    if decoders[0].received:
        audio = _joined([d.flush() for d in decoders])
        if audio.shape[2]:
            yield audio


def _joined(channels: list[mx.array]) -> mx.array:
    audio = mx.concatenate(channels, axis=1)
    mx.eval(audio)
    return audio


def decode_in_chunks(
    codec: EncodecModel, codes: mx.array, channels: int = 1, chunk_frames: int = 1500
) -> mx.array:
    """The audio of codes (B, K, T) decoded ``chunk_frames`` at a time: the samples of a
    whole decode with memory bounded by the chunk (what ``MusicGen.decode`` does for long
    codes)."""
    pieces = (codes[:, :, i : i + chunk_frames] for i in range(0, codes.shape[2], chunk_frames))
    return mx.concatenate(list(decode_chunks(codec, pieces, codes.shape[1], channels)), axis=2)


def write_stream(
    path: str | os.PathLike,
    chunks: Iterable[mx.array],
    sample_rate: int,
    *,
    item: int = 0,
    format: str | None = None,
) -> Path:
    """Write audio chunks (B, channels, samples) to a wav or flac file as they arrive.

    Only batch item ``item`` is written. Samples are clipped to [-1, 1] (peak normalization
    needs the whole piece). The file is complete and valid only after the last chunk. The
    format follows the suffix, or ``format`` (".wav" or ".flac") when given.
    """
    import soundfile as sf

    from musicgen.audio import FORMATS

    path = Path(path)
    suffix = (format or path.suffix).lower()
    if suffix not in (".wav", ".flac"):
        raise InvalidArgumentError(f"cannot stream to '{path.name}': use a .wav or .flac file.")
    container, subtype = FORMATS[suffix]
    handle = None
    try:
        for chunk in chunks:
            samples = np.clip(np.asarray(chunk[item], dtype=np.float32).T, -1.0, 1.0)
            if handle is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = sf.SoundFile(
                    str(path), "w", int(sample_rate), samples.shape[1], subtype, format=container
                )
            handle.write(samples)
            handle.flush()
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"could not write {path}: {exc}") from None
    finally:
        if handle is not None:
            handle.close()
    if handle is None:
        raise InvalidArgumentError("no audio to write: the stream was empty.")
    return path
