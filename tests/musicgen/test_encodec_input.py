"""EnCodec config reading, and clear errors for bad input and bad weights."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from musicgen.encodec import EncodecConfig, EncodecModel
from musicgen.errors import CheckpointError

from tests.musicgen.encodec_checkpoints import ENCODEC_32KHZ, TINY_CONFIGS


@pytest.fixture(scope="module")
def model() -> EncodecModel:
    return EncodecModel(EncodecConfig.from_dict(TINY_CONFIGS["tiny"]))  # 4 codebooks of 16


def test_config_of_musicgen_audio_encoder():
    config = EncodecConfig.from_dict({**ENCODEC_32KHZ, "transformers_version": "4.31.0"})
    model = EncodecModel(config)
    assert (model.sampling_rate, model.hop_length, model.frame_rate) == (32000, 640, 50)
    assert (model.num_codebooks, model.audio_channels) == (4, 1)
    assert config.num_quantizers == 4 and config.codebook_dim == 128


def test_config_defaults_are_transformers_defaults():
    config = EncodecConfig.from_dict({})  # facebook/encodec_24khz
    assert config.use_causal_conv and config.use_conv_shortcut
    assert (config.hop_length, config.frame_rate, config.num_quantizers) == (320, 75, 32)
    assert EncodecModel(config).num_codebooks == 2  # 1.5 kbps


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"norm_type": "batch_norm"}, "norm_type"),
        ({"pad_mode": "circular"}, "pad_mode"),
        ({"codebook_size": 1000}, "codebook_size"),
        ({"target_bandwidths": [0.1]}, "target_bandwidths"),
        ({"normalize": True}, "normalize"),
        ({"chunk_length_s": 1.0}, "chunk_length_s"),
        ({"trim_right_ratio": 0.5}, "trim_right_ratio"),
    ],
)
def test_unsupported_config(change, field):
    with pytest.raises(CheckpointError, match=field):
        EncodecConfig.from_dict({**TINY_CONFIGS["tiny"], **change})


@pytest.mark.parametrize(
    ("codes", "problem"),
    [
        (np.zeros((4, 5), np.int32), "shape"),
        (np.zeros((1, 5, 5), np.int32), "shape"),  # more codebooks than stored
        (np.zeros((1, 4, 0), np.int32), "shape"),
        (np.zeros((1, 4, 5), np.float32), "dtype"),
        (np.full((1, 4, 5), 16, np.int32), "range"),
        (np.full((1, 4, 5), -1, np.int32), "range"),
    ],
)
def test_bad_codes(model, codes, problem):
    with pytest.raises(ValueError, match=problem) as error:
        model.decode(mx.array(codes))
    assert "pass int codes shaped (batch, codebooks, frames)" in str(error.value)


@pytest.mark.parametrize(
    ("audio", "problem"),
    [
        (np.zeros((1, 64), np.float32), "shape"),
        (np.zeros((1, 2, 64), np.float32), "2 channels"),
        (np.zeros((1, 1, 0), np.float32), "empty"),
        (np.zeros((1, 1, 64), np.int16), "dtype"),
    ],
)
def test_bad_audio(model, audio, problem):
    with pytest.raises(ValueError, match=problem) as error:
        model.encode(mx.array(audio))
    assert "pass float audio shaped (batch, 1, samples) at 800 Hz" in str(error.value)


def test_bad_bandwidth(model):
    with pytest.raises(ValueError, match=r"pass one of \[1.6\]"):
        model.encode(mx.zeros((1, 1, 64)), bandwidth=6.0)


def test_sanitize_needs_both_weight_norm_halves():
    v = mx.ones((4, 1, 7))
    with pytest.raises(CheckpointError, match="weight_g"):
        EncodecModel.sanitize({"encoder.layers.0.conv.parametrizations.weight.original1": v})
    with pytest.raises(CheckpointError, match="weight_v"):
        EncodecModel.sanitize({"encoder.layers.0.conv.weight_g": mx.ones((4, 1, 1))})
