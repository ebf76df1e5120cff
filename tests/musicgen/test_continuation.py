"""Audio continuation vs transformers' generate(input_values=...): codes and audio; bad input."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
import torch
from musicgen import AudioError, InvalidArgumentError
from musicgen.audio_input import resample

from tests.musicgen.checkpoints import (
    AUDIO_ATOL,
    PROMPTS,
    reference_generate,
    reference_inputs,
)
from tests.musicgen.feature_checkpoints import SAMPLE_RATE, loaded, melody_checkpoint, tune

PROMPT_FRAMES, NEW_FRAMES = 15, 10  # 0.3 s of audio prompt, 0.2 s of continuation


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
def test_continuation_matches_transformers(tiny_model, tiny_reference, tiny_path, guidance_scale):
    prompts = PROMPTS[:2]
    audio = np.stack([tune(0.3, seed=1), tune(0.3, seed=2)])  # (2, 1, 240): one per prompt
    inputs = reference_inputs(tiny_path, prompts)
    inputs["input_values"] = torch.tensor(audio)
    expected_codes, expected_audio = reference_generate(
        tiny_reference,
        inputs,
        do_sample=False,
        guidance_scale=guidance_scale,
        max_new_tokens=NEW_FRAMES + 3,
    )
    duration = (PROMPT_FRAMES + NEW_FRAMES) / 50
    options = {"duration": duration, "guidance_scale": guidance_scale, "temperature": 0}
    prompt_codes = tiny_model.encode_audio(audio, SAMPLE_RATE, batch=2)
    codes = tiny_model.generate_tokens(prompts, prompt_codes=prompt_codes, **options)
    assert codes.shape == (2, 4, PROMPT_FRAMES + NEW_FRAMES)
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    # The result starts with the prompt's own codes; the rest is new.
    assert np.array_equal(np.array(codes[:, :, :PROMPT_FRAMES]), np.array(prompt_codes))
    assert len(np.unique(np.array(codes[:, :, PROMPT_FRAMES:]))) > 4

    audio_out = tiny_model.generate_continuation(audio, SAMPLE_RATE, prompts, **options)
    assert audio_out.shape == (2, 1, (PROMPT_FRAMES + NEW_FRAMES) * 16)
    np.testing.assert_allclose(np.array(audio_out), expected_audio.numpy(), rtol=0, atol=AUDIO_ATOL)


def test_the_encoder_codes_match_transformers(tiny_model, tiny_reference):
    audio = tune(0.37, seed=3)[None]  # 296 samples: 19 frames, the last one partial
    codes = tiny_model.encode_audio(audio[0], SAMPLE_RATE)
    with torch.no_grad():
        expected = tiny_reference.audio_encoder.encode(torch.tensor(audio)).audio_codes[0]
    assert codes.shape == (1, 4, 19)
    assert np.array_equal(np.array(codes), expected.numpy())


def test_one_audio_prompt_serves_every_text_prompt_and_seeds_reproduce(tiny_model):
    audio = tune(0.3, seed=4)
    run = [
        tiny_model.generate_continuation(audio, SAMPLE_RATE, PROMPTS, duration=0.5, seed=9)
        for _ in range(2)
    ]
    assert run[0].shape == (3, 1, 25 * 16)
    assert mx.array_equal(run[0], run[1])
    prompt_codes = tiny_model.encode_audio(audio, SAMPLE_RATE)
    codes = np.array(
        tiny_model.generate_tokens(PROMPTS, duration=0.5, seed=9, prompt_codes=prompt_codes)
    )
    # Each row continues the same prompt under its own text.
    assert np.array_equal(codes[:, :, :PROMPT_FRAMES], np.repeat(np.array(prompt_codes), 3, 0))
    assert not np.array_equal(codes[0, :, PROMPT_FRAMES:], codes[1, :, PROMPT_FRAMES:])
    np.testing.assert_allclose(np.array(run[0]), np.array(tiny_model.decode(mx.array(codes))))


def test_a_prompt_at_another_rate_or_from_a_file_is_resampled(tiny_model, tmp_path):
    wave = tune(0.3, rate=1600, seed=5)
    path = tmp_path / "prompt.flac"
    sf.write(path, wave[0], 1600)
    expected = tiny_model.encode_audio(resample(wave, 1600, SAMPLE_RATE), SAMPLE_RATE)
    assert np.array_equal(np.array(tiny_model.encode_audio(wave, 1600)), np.array(expected))
    from_file = tiny_model.encode_audio(path)
    assert from_file.shape == expected.shape
    assert np.mean(np.array(from_file) == np.array(expected)) > 0.9  # 16-bit flac rounding


def test_melody_model_continues_an_audio_prompt_too():
    model = loaded(melody_checkpoint(audio_channels=1))
    audio = tune(0.3, seed=6)
    out = model.generate_continuation(
        audio, SAMPLE_RATE, "calm", duration=0.5, temperature=0,
        melody=tune(0.8, seed=7), melody_sample_rate=SAMPLE_RATE,
    )  # fmt: skip
    assert out.shape == (1, 1, 25 * 16)
    codes = model.generate_tokens(
        "calm", duration=0.5, temperature=0, prompt_codes=model.encode_audio(audio, SAMPLE_RATE),
        melody=tune(0.8, seed=7), melody_sample_rate=SAMPLE_RATE,
    )  # fmt: skip
    np.testing.assert_allclose(np.array(out), np.array(model.decode(codes)), atol=1e-6)


@pytest.mark.parametrize(
    ("audio", "rate", "duration", "error", "message"),
    [
        (tune(0.6), 800, 0.5, InvalidArgumentError, "must be shorter than the duration"),
        (tune(31.0), 800, 40.0, InvalidArgumentError, "must be shorter than the duration and"),
        (np.zeros((1, 240), np.float32), 800, 0.5, InvalidArgumentError, "is silent"),
        (np.full(240, np.inf, np.float32), 800, 0.5, InvalidArgumentError, "NaN or infinite"),
        (tune(0.3), None, 0.5, InvalidArgumentError, "give the sample rate"),
        (
            [tune(0.3), tune(0.2)],
            800,
            0.5,
            InvalidArgumentError,
            "must have the same length, got \\[160, 240\\]",
        ),
        (None, 800, 0.5, InvalidArgumentError, "prompt_audio is missing"),
        ("nowhere.wav", None, 0.5, AudioError, "does not exist"),
    ],
)
def test_bad_audio_prompts(tiny_model, audio, rate, duration, error, message):
    with pytest.raises(error, match=message):
        tiny_model.generate_continuation(audio, rate, ["calm", "epic"], duration=duration)


def test_prompt_codes_must_fit_the_model(tiny_model):
    with pytest.raises(InvalidArgumentError, match=r"shape \(batch, 4, frames\)"):
        tiny_model.generate_tokens("calm", duration=0.5, prompt_codes=mx.zeros((1, 8, 5), mx.int32))
    with pytest.raises(InvalidArgumentError, match="batch size 2 for 3 text prompts"):
        tiny_model.generate_tokens(
            PROMPTS, duration=0.5, prompt_codes=mx.zeros((2, 4, 5), mx.int32)
        )


def test_the_cli_and_the_tool_continue_a_file(tiny_path, tmp_path):
    import json

    import rag_core
    from rag_core.pipeline import PipelineState

    from tests.musicgen.feature_checkpoints import run_cli

    prompt_file = tmp_path / "intro.wav"
    sf.write(prompt_file, tune(0.3, seed=7)[0], SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "continued.wav"
    code, output = run_cli(
        "music", "generate", "calm", "--model", tiny_path, "--duration", "0.5", "--seed", "2",
        "--continue", prompt_file, "--normalize", "none", "--output", out, "--json",
    )  # fmt: skip
    assert code == 0, output
    record = json.loads(output[output.index("{") :])
    assert record["duration"] == 0.5  # the prompt counts
    assert record["parameters"]["continue_from"] == str(prompt_file)
    written, _ = sf.read(str(out), dtype="float32")
    model = loaded(tiny_path)
    expected = model.generate_continuation(prompt_file, None, "calm", duration=0.5, seed=2)
    np.testing.assert_allclose(written, np.clip(np.array(expected)[0, 0], -1, 1), atol=1 / 2**14)

    state = PipelineState(question="a quiet harbour")
    result = rag_core.get_tool("music").run(
        state, prompt="calm", model=str(tiny_path), duration=0.5, seed=2, normalize="none",
        continue_from=str(prompt_file), output=str(tmp_path / "tool.wav"),
    )  # fmt: skip
    tool_audio, _ = sf.read(result["path"], dtype="float32")
    np.testing.assert_array_equal(tool_audio, written)

    code, output = run_cli("music", "generate", "calm", "--model", tiny_path,
                           "--continue", tmp_path / "missing.wav")  # fmt: skip
    assert code == 2 and "does not exist" in output
