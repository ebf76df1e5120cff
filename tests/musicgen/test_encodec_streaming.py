"""Streaming EnCodec decoding equals decoding the whole clip."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from musicgen.encodec import EncodecConfig, EncodecModel

from tests.musicgen.encodec_checkpoints import TINY_CONFIGS

PIECES = [1, 2, 1, 5, 3, 7, 1, 1, 4, 8, 3]  # 36 frames in uneven pushes


def random_model(name: str, seed: int = 0) -> EncodecModel:
    """A codec with MLX's random init (the decoder math is what matters here, not parity)."""
    mx.random.seed(seed)
    model = EncodecModel(EncodecConfig.from_dict(TINY_CONFIGS[name]))
    mx.eval(model.parameters())
    return model


def random_codes(model: EncodecModel, frames: int, seed: int = 0) -> mx.array:
    rng = np.random.default_rng(seed)
    shape = (2, model.num_codebooks, frames)
    return mx.array(rng.integers(0, model.config.codebook_size, size=shape).astype(np.int32))


def stream(decoder, codes: mx.array, pieces: list[int]) -> list[mx.array]:
    chunks, start = [], 0
    for n in pieces:
        chunks.append(decoder.push(codes[:, :, start : start + n]))
        start += n
    return [*chunks, decoder.flush()]


@pytest.mark.parametrize("name", ["tiny", "tiny-causal"])
def test_stream_equals_decode(name):
    model = random_model(name)
    codes = random_codes(model, sum(PIECES))
    decoder = model.stream_decoder()
    chunks = stream(decoder, codes, PIECES)

    # Audio for a frame is out once `latency` more frames have been pushed.
    pushed = np.cumsum(PIECES)
    emitted = np.cumsum([c.shape[2] for c in chunks[:-1]]) // model.hop_length
    np.testing.assert_array_equal(emitted, np.maximum(0, pushed - decoder.latency))

    assert all(c.dtype == mx.float32 and c.shape[:2] == (2, model.audio_channels) for c in chunks)
    streamed = np.concatenate([np.array(c) for c in chunks], axis=2)
    whole = np.array(model.decode(codes))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


def test_stream_needs_its_stated_context():
    """One frame less of overlap than computed changes the audio at the seams."""
    model = random_model("tiny")
    codes = random_codes(model, sum(PIECES))
    decoder = model.stream_decoder()
    decoder.post_context -= 1
    streamed = np.concatenate([np.array(c) for c in stream(decoder, codes, PIECES)], axis=2)
    assert np.abs(streamed - np.array(model.decode(codes))).max() > 1e-4


def test_stream_of_a_short_clip():
    model = random_model("tiny")
    codes = random_codes(model, 2)
    decoder = model.stream_decoder()
    assert decoder.received == 0
    assert decoder.push(codes).shape == (2, 1, 0)
    assert decoder.received == 2
    np.testing.assert_allclose(np.array(decoder.flush()), np.array(model.decode(codes)), atol=1e-6)


def test_stream_misuse():
    model = random_model("tiny")
    codes = random_codes(model, 4)
    decoder = model.stream_decoder()
    with pytest.raises(ValueError, match="no codes were pushed"):
        decoder.flush()

    decoder = model.stream_decoder()
    decoder.push(codes)
    with pytest.raises(ValueError, match="same batch size"):
        decoder.push(codes[:1])
    decoder.flush()
    with pytest.raises(ValueError, match="start a new stream_decoder"):
        decoder.push(codes)

    with pytest.raises(ValueError, match="time_group_norm"):
        random_model("tiny-groupnorm").stream_decoder()
