"""Stereo models (facebook/musicgen-stereo-* layout) against transformers: generation without
guidance, continuation of a stereo prompt, stereo melody; how stereo and mono audio meet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from musicgen import InvalidArgumentError

from tests.musicgen.checkpoints import (
    AUDIO_ATOL,
    PROMPTS,
    assert_generation_matches_reference,
    reference_generate,
    reference_inputs,
    reference_model,
)
from tests.musicgen.feature_checkpoints import (
    MELODY_PREPROCESSOR,
    SAMPLE_RATE,
    loaded,
    melody_checkpoint,
    melody_reference,
    reference_chroma,
    stereo_checkpoint,
    tune,
)


@pytest.fixture(scope="module")
def stereo():
    path = stereo_checkpoint()
    return loaded(path), reference_model(path), path


def test_the_stereo_layout_loads_as_interleaved_codebooks(stereo):
    model = stereo[0]
    assert (model.num_codebooks, model.audio_channels) == (8, 2)
    assert model.codec.num_codebooks == 4  # one mono codec, run once per channel
    codes = model.generate_tokens(["calm"], duration=0.3, seed=1)
    audio = np.array(model.decode(codes))
    left, right = (np.array(model.codec.decode(codes[:, c::2])) for c in (0, 1))
    assert np.array_equal(audio[:, :1], left) and np.array_equal(audio[:, 1:], right)
    assert not np.allclose(left, right)


def test_stereo_greedy_without_guidance_matches_transformers(stereo):
    model, reference, path = stereo
    assert_generation_matches_reference(model, reference, path, PROMPTS, 1.0, duration=0.4)


def test_stereo_continuation_matches_transformers(stereo):
    model, reference, path = stereo
    prompts = PROMPTS[:2]
    audio = np.stack([tune(0.3, seed=1, channels=2), tune(0.3, seed=2, channels=2)])
    inputs = reference_inputs(path, prompts)
    inputs["input_values"] = torch.tensor(audio)
    expected_codes, expected_audio = reference_generate(
        reference, inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=10 + 3
    )
    codes = model.generate_tokens(
        prompts,
        duration=0.5,
        temperature=0,
        prompt_codes=model.encode_audio(audio, SAMPLE_RATE, batch=2),
    )
    assert codes.shape == (2, 8, 25)
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    out = model.generate_continuation(audio, SAMPLE_RATE, prompts, duration=0.5, temperature=0)
    assert out.shape == (2, 2, 25 * 16)
    np.testing.assert_allclose(np.array(out), expected_audio.numpy(), rtol=0, atol=AUDIO_ATOL)


def test_stereo_melody_matches_transformers():
    path = melody_checkpoint(audio_channels=2)
    model = loaded(path)
    assert model.config.is_melody and model.audio_channels == 2
    prompts, melody = PROMPTS[:2], [tune(0.5, seed=3), tune(0.5, seed=4, channels=2)]
    inputs = reference_inputs(path, prompts)
    mono = [m.mean(axis=0) for m in melody]  # as the reference extractor mixes stereo down
    inputs["input_features"] = reference_chroma(mono, MELODY_PREPROCESSOR)
    expected_codes, expected_audio = reference_generate(
        melody_reference(path), inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=15 + 3
    )
    codes = model.generate_tokens(
        prompts, duration=0.3, temperature=0, melody=melody, melody_sample_rate=SAMPLE_RATE
    )
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    audio = model.decode(codes)
    np.testing.assert_allclose(np.array(audio), expected_audio.numpy(), rtol=0, atol=AUDIO_ATOL)


def test_a_mono_prompt_plays_on_both_channels_of_a_stereo_model(stereo):
    model = stereo[0]
    mono = tune(0.3, seed=5)
    codes = np.array(model.encode_audio(mono, SAMPLE_RATE))
    assert codes.shape == (1, 8, 15)
    assert np.array_equal(codes[:, 0::2], codes[:, 1::2])
    both = np.array(model.encode_audio(np.repeat(mono, 2, axis=0), SAMPLE_RATE))
    assert np.array_equal(codes, both)


def test_a_stereo_prompt_is_mixed_down_for_a_mono_model(tiny_model):
    wave = tune(0.3, seed=6, channels=2)
    codes = tiny_model.encode_audio(wave, SAMPLE_RATE)
    mixed = tiny_model.encode_audio(wave.mean(axis=0), SAMPLE_RATE)
    assert codes.shape == (1, 4, 15)
    assert np.array_equal(np.array(codes), np.array(mixed))


def test_stereo_codes_on_a_mono_model_are_refused(tiny_model, stereo):
    codes = stereo[0].generate_tokens(["calm"], duration=0.2, seed=0)
    with pytest.raises(InvalidArgumentError, match=r"shape \(batch, 4, frames\)"):
        tiny_model.decode(codes)
    with pytest.raises(InvalidArgumentError, match=r"shape \(batch, 4, frames\)"):
        tiny_model.generate_tokens(["calm"], duration=0.5, prompt_codes=codes)
