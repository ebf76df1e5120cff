"""EnCodec in MLX against transformers' EncodecModel on random checkpoints it wrote itself."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from musicgen.encodec import EncodecModel

from tests.musicgen.encodec_checkpoints import (
    ENCODEC_32KHZ,
    TINY_CONFIGS,
    float16_copy,
    legacy_copy,
    load_mlx,
    load_reference,
    random_codes,
    reference_decode,
    reference_encode,
    write_checkpoint,
)

# Largest absolute difference allowed between our float32 audio and transformers' (issue 3).
TOLERANCE = 1e-4
# Encoding must pick the same codes; the inputs must not contain near ties that float32
# rounding could flip: the best and second-best entries differ by at least this much of the
# largest distance (rounding differences between the two implementations are ~1e-7).
MIN_RELATIVE_GAP = 1e-5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(name) -> directory with transformers' save_pretrained output (cached)."""
    root = tmp_path_factory.mktemp("encodec")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            config = ENCODEC_32KHZ if name == "encodec_32khz" else TINY_CONFIGS[name]
            write_checkpoint(root / name, config)
            made[name] = root / name
        return made[name]

    return get


def random_audio(model: EncodecModel, batch: int, frames: int, seed: int) -> np.ndarray:
    """Noise a few samples short of `frames` frames, so the last frame is padded."""
    rng = np.random.default_rng(seed)
    shape = (batch, model.audio_channels, frames * model.hop_length - 3)
    return (0.3 * rng.standard_normal(shape)).astype(np.float32)


def assert_close(ours: mx.array, reference: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert ours.dtype == mx.float32
    assert tuple(ours.shape) == reference.shape
    assert np.abs(reference).max() > 1e-2  # a silent output would prove nothing
    error = np.abs(np.array(ours) - reference).max()
    assert error <= tolerance, f"max abs error {error:.3g} > {tolerance:g}"


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_decode_matches_transformers(checkpoint, name):
    path = checkpoint(name)
    reference, model = load_reference(path), load_mlx(path)
    codes = random_codes(reference, batch=2, frames=13, seed=1)
    audio = model.decode(mx.array(codes.astype(np.int32)))
    assert audio.shape == (2, model.audio_channels, 13 * model.hop_length)
    assert_close(audio, reference_decode(reference, codes))


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_encode_matches_transformers(checkpoint, name):
    path = checkpoint(name)
    reference, model = load_reference(path), load_mlx(path)
    audio = random_audio(model, batch=2, frames=13, seed=2)
    expected, gap = reference_encode(reference, audio)
    assert gap > MIN_RELATIVE_GAP, "test input has a near tie; pick another seed"
    codes = model.encode(mx.array(audio))
    assert codes.dtype == mx.int32
    assert codes.shape == (2, model.num_codebooks, 13)
    np.testing.assert_array_equal(np.array(codes), expected)


def test_encode_at_other_bandwidth(checkpoint):
    path = checkpoint("tiny-groupnorm")  # target bandwidths 0.8 and 1.6 kbps
    reference, model = load_reference(path), load_mlx(path)
    audio = random_audio(model, batch=1, frames=9, seed=3)
    expected, gap = reference_encode(reference, audio, bandwidth=1.6)
    assert gap > MIN_RELATIVE_GAP
    codes = model.encode(mx.array(audio), bandwidth=1.6)
    assert model.num_codebooks == 2 and codes.shape == (1, 4, 9)
    np.testing.assert_array_equal(np.array(codes), expected)
    # Decoding takes any number of codebooks up to the stored ones, as transformers does.
    assert_close(model.decode(codes), reference_decode(reference, expected))


def test_both_weight_norm_namings_load_the_same(checkpoint, tmp_path):
    path = checkpoint("tiny")
    legacy = legacy_copy(path, tmp_path / "legacy")
    current = dict(tree_flatten(load_mlx(path).parameters()))
    old = dict(tree_flatten(load_mlx(legacy).parameters()))
    assert current.keys() == old.keys()
    for key, value in current.items():
        np.testing.assert_array_equal(np.array(old[key]), np.array(value), err_msg=key)
    reference = load_reference(path)
    codes = random_codes(reference, batch=1, frames=7, seed=4)
    assert_close(load_mlx(legacy).decode(mx.array(codes)), reference_decode(reference, codes))


def test_float16_storage(checkpoint, tmp_path):
    half = float16_copy(checkpoint("tiny"), tmp_path / "half")
    reference = load_reference(half)  # upcast to float32 by transformers
    codes = random_codes(reference, batch=2, frames=7, seed=5)
    expected = reference_decode(reference, codes)

    # Cast to float32 before sanitize (as a float32 load does): weight norm folds exactly.
    assert_close(load_mlx(half, dtype=mx.float32).decode(mx.array(codes)), expected)

    # Kept in float16: parameters stay float16, audio comes back float32, close to the reference.
    model = load_mlx(half)
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.float16}
    assert_close(model.decode(mx.array(codes)), expected, tolerance=2e-2 * np.abs(expected).max())


@pytest.mark.slow
def test_encodec_32khz_shapes(checkpoint):
    """The codec of facebook/musicgen-* at its real shapes (random weights)."""
    path = checkpoint("encodec_32khz")
    reference, model = load_reference(path), load_mlx(path)
    assert (model.sampling_rate, model.hop_length, model.frame_rate) == (32000, 640, 50)
    assert (model.num_codebooks, model.audio_channels) == (4, 1)

    codes = random_codes(reference, batch=1, frames=10, seed=6)
    assert_close(model.decode(mx.array(codes)), reference_decode(reference, codes))

    audio = random_audio(model, batch=1, frames=10, seed=7)
    expected, gap = reference_encode(reference, audio)
    assert gap > MIN_RELATIVE_GAP
    np.testing.assert_array_equal(np.array(model.encode(mx.array(audio))), expected)

    # Streaming: 4 frames (80 ms) of look-ahead, and the same audio as decoding at once.
    decoder = model.stream_decoder()
    assert (decoder.in_context, decoder.post_context, decoder.latency) == (3, 1, 4)
    whole = model.decode(mx.array(codes))
    pieces = [decoder.push(mx.array(codes[:, :, a:b])) for a, b in [(0, 5), (5, 6), (6, 10)]]
    streamed = mx.concatenate([*pieces, decoder.flush()], axis=2)
    assert [p.shape[2] // 640 for p in pieces] == [1, 1, 4]
    np.testing.assert_allclose(np.array(streamed), np.array(whole), rtol=0, atol=1e-5)


@pytest.mark.parametrize("stride, dilation, taps", [(1, 1, 7), (1, 2, 3), (4, 1, 8), (1, 1, 1)])
def test_conv1d_as_products_matches_mlx_conv(stride, dilation, taps):
    """The per-tap products give mx.conv1d's output (same shape, float rounding apart)."""
    from musicgen.encodec.conv import conv1d

    x = mx.random.normal((2, 37, 5), key=mx.random.key(0))
    weight = mx.random.normal((6, taps, 5), key=mx.random.key(1))
    ours = conv1d(x, weight, stride, dilation)
    expected = mx.conv1d(x, weight, stride=stride, dilation=dilation)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(np.array(ours), np.array(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_steps_match_mlx_lstm(with_state):
    """The compiled step gives nn.LSTM's hidden states and its last hidden state and cell."""
    import mlx.nn as nn
    from musicgen.encodec.lstm import run_lstm

    layer = nn.LSTM(8, 8)
    x = mx.random.normal((3, 11, 8), key=mx.random.key(2))
    h0 = c0 = None
    if with_state:
        h0, c0 = (mx.random.normal((3, 8), key=mx.random.key(k)) for k in (3, 4))
    expected_hidden, expected_cells = layer(x, hidden=h0, cell=c0)
    hidden, last_hidden, last_cell = run_lstm(layer, x, h0, c0)
    for ours, theirs in ((hidden, expected_hidden), (last_hidden, expected_hidden[:, -1]),
                         (last_cell, expected_cells[:, -1])):  # fmt: skip
        np.testing.assert_allclose(np.array(ours), np.array(theirs), atol=1e-6, rtol=1e-6)
