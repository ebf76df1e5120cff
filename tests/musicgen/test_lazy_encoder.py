"""The EnCodec encoder's weights stay on disk until something encodes audio."""

from __future__ import annotations

import shutil
import threading

import mlx.core as mx
import musicgen
import numpy as np
import pytest
from mlx.utils import tree_flatten
from musicgen.errors import CheckpointError

from tests.musicgen.checkpoints import write_tiny_musicgen

SAMPLE_RATE = 32000


def _codec_bytes(model) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.codec.parameters()))


@pytest.fixture
def tiny_copy(tiny_path, tmp_path):
    return shutil.copytree(tiny_path, tmp_path / "tiny")


def test_the_encoder_loads_on_first_encode_only(tiny_copy, tiny_model):
    model = musicgen.load(tiny_copy)
    before = _codec_bytes(model)
    assert not model.codec.encoder_loaded
    model.generate_tokens(["calm"], duration=0.1, temperature=0, seed=0)
    assert not model.codec.encoder_loaded and _codec_bytes(model) == before

    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, SAMPLE_RATE // 4)).astype(np.float32)
    codes = model.encode_audio(audio, SAMPLE_RATE)
    after = _codec_bytes(model)
    assert model.codec.encoder_loaded
    encoder = sum(v.nbytes for _, v in tree_flatten(model.codec.encoder.parameters()))
    assert after == before + encoder and encoder > 0.3 * after  # about half the codec
    # The same codes as a model whose encoder was loaded earlier (the session's shared model).
    assert np.array_equal(np.array(codes), np.array(tiny_model.encode_audio(audio, SAMPLE_RATE)))


def test_concurrent_first_encodes_load_the_encoder_once(tiny_copy, monkeypatch):
    from musicgen import loading

    model = musicgen.load(tiny_copy)
    calls = []
    real = loading.read_weights
    monkeypatch.setattr(loading, "read_weights", lambda p: calls.append(p) or real(p))
    audio = mx.zeros((1, 1, SAMPLE_RATE // 8))
    threads = [threading.Thread(target=model.codec.encode, args=(audio,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and model.codec.encoder_loaded


def test_vanished_checkpoint_is_a_clear_error_on_first_encode(tmp_path):
    path = write_tiny_musicgen(tmp_path / "gone")
    model = musicgen.load(path)
    tokens = model.generate_tokens(["calm"], duration=0.1, temperature=0, seed=0)
    assert np.isfinite(np.array(model.decode(tokens))).all()  # decoding needs no encoder
    shutil.rmtree(path)
    with pytest.raises(CheckpointError, match=r"EnCodec encoder .* on first use.*can no longer"):
        model.codec.encode(mx.zeros((1, 1, 1600)))
