"""Errors before work, and short: options checked against config.json before any load, short
offline errors that name the offline option, long prompts cut with a note, honest help."""

from __future__ import annotations

import json
import re
import traceback

import numpy as np
import pytest
import soundfile as sf
from musicgen.plugin.smoke import SMOKE_ID, smoke_dir
from rag_core import get_registry

from tests.plugin.helpers import files_in


@pytest.fixture
def melody_wav(tmp_path):
    path = tmp_path / "tune.wav"
    sf.write(str(path), 0.5 * np.sin(np.linspace(0, 400, 16000)), 16000)
    return path


def nothing_loaded() -> bool:
    return get_registry().loaded() == []


@pytest.mark.parametrize("model", ["tiny", SMOKE_ID])
def test_a_duration_under_one_frame_fails_before_loading(cli, tiny, out, model):
    model = str(tiny) if model == "tiny" else model
    result = cli("music", "generate", "calm", "-m", model, "-d", "0.001", "-o", out / "x.wav")
    assert result.exit_code == 1
    assert "Error: duration 0.001 s is shorter than one frame (0.02 s)." in result.stderr
    assert nothing_loaded() and files_in(out) == [] and not smoke_dir().exists()


def test_a_melody_for_a_text_only_model_fails_before_loading(cli, tiny, out, melody_wav):
    result = cli("music", "generate", "calm", "-m", tiny, "--melody", melody_wav, "-o",
                 out / "x.wav")  # fmt: skip
    assert result.exit_code == 1
    assert (f"Error: melody: '{tiny}' conditions on text only; melody conditioning needs a "
            "MusicGen-Melody checkpoint") in result.stderr
    assert nothing_loaded() and files_in(out) == []


def test_bad_audio_inputs_fail_before_loading(cli, tiny, out, melody_wav, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    result = cli("music", "generate", "calm", "-m", tiny, "--continue", text, "-o", out / "x.wav")
    assert result.exit_code == 1 and "continue_from: " in result.stderr
    assert "cannot be read as audio" in result.stderr
    result = cli("music", "generate", "calm", "-m", tiny, "--continue", melody_wav, "-d", "0.5",
                 "-o", out / "x.wav")  # fmt: skip
    assert result.exit_code == 1
    assert "lasts 1.00 s, but the track it starts lasts 0.5 s" in result.stderr
    assert nothing_loaded() and files_in(out) == []


def test_the_demo_checks_its_options_before_ingesting(cli, tmp_path):
    store = tmp_path / "demo.sqlite3"
    result = cli("music", "demo", "--smoke", "-d", "0.001", "--store", store)
    assert result.exit_code == 1 and "shorter than one frame" in result.stderr
    assert not store.exists() and nothing_loaded()


def test_the_python_api_offline_error_is_short_and_keeps_its_cause():
    import musicgen
    from huggingface_hub.errors import LocalEntryNotFoundError
    from rag_core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError) as caught:
        musicgen.load("facebook/musicgen-small")
    error = caught.value
    assert error.__cause__ is None and error.__suppress_context__
    assert isinstance(error.cause, LocalEntryNotFoundError)  # for debugging
    printed = "".join(traceback.format_exception(error))
    assert len(printed.splitlines()) < 20 and "httpx" not in printed
    assert "During handling" not in printed and "direct cause" not in printed


def test_an_unreachable_default_model_names_the_offline_option(cli, out):
    result = cli("music", "generate", "calm", "-o", out / "x.wav")
    assert result.exit_code == 1
    assert "Error: Model 'facebook/musicgen-small' is not available" in result.stderr
    assert f"use the untrained smoke checkpoint: --model {SMOKE_ID}" in result.stderr


def test_a_long_prompt_is_cut_with_a_note_and_stored_once(cli, out):
    prompt = " ".join(f"calm piano number {i} with soft rain" for i in range(200))
    result = cli("music", "generate", prompt, "-m", SMOKE_ID, "-d", "0.2", "-o", out / "x.wav")
    assert result.exit_code == 0, result.output
    note = re.search(r"Note: The prompt is longer than the text encoder reads \(512 tokens\): "
                     r"it was cut after character (\d+) of (\d+), at '\.\.\.(.*?)'; the rest "
                     r"was not used\.", result.stderr)  # fmt: skip
    assert note, result.stderr
    cut, total = int(note[1]), int(note[2])
    assert total == len(prompt) and 0 < cut < total
    assert prompt[:cut].endswith(note[3])
    model = get_registry().get(SMOKE_ID)
    assert model.tokenizer([prompt])[0].shape == (1, 512)
    assert model.tokenizer.cut_point(prompt[:cut]) is None  # the part read fits
    sidecar = json.loads((out / "x.wav.json").read_text())
    assert any("was cut after character" in n for n in sidecar["prompt_source"]["notes"])
    data = {k: v for k, v in sidecar.items() if k != "reproduce"}  # a command names it again
    assert json.dumps(data).count(prompt) == 1


def test_short_prompts_are_not_cut(cli, out):
    result = cli("music", "generate", "calm", "-m", SMOKE_ID, "-d", "0.2", "-o", out / "x.wav")
    assert result.exit_code == 0 and "cut after" not in result.stderr


def test_help_shows_each_commands_real_default_duration(cli):
    from musicgen import GenerationOptions
    from musicgen.plugin.demo import DEFAULT_DURATION

    def duration_help(command: str) -> str:
        text = " ".join(cli("music", command, "--help").stdout.split())
        return re.search(r"--duration SECONDS Seconds of audio, .*? Default: ([\d.]+)\.", text)[1]

    assert float(duration_help("demo")) == DEFAULT_DURATION == 6
    assert float(duration_help("generate")) == GenerationOptions().duration
    assert float(duration_help("batch")) == GenerationOptions().duration


def test_normalize_none_says_what_it_clips(cli, out, monkeypatch):
    from musicgen.model import MusicGen

    decode = MusicGen.decode
    monkeypatch.setattr(MusicGen, "decode", lambda self, codes: 4 * decode(self, codes))
    args = ("music", "generate", "calm", "-m", SMOKE_ID, "-d", "0.2", "--seed", "1")
    result = cli(*args, "--normalize", "none", "-o", out / "x.wav")
    assert result.exit_code == 0, result.output
    clipped = re.search(r"Note: --normalize none: (\d+) samples lie beyond \[-1, 1\] and were "
                        r"clipped to fit the 16-bit \.wav file", result.stderr)  # fmt: skip
    assert clipped and int(clipped[1]) > 0
    audio, _ = sf.read(str(out / "x.wav"))
    assert int(clipped[1]) == int(np.sum(np.abs(audio) >= 32767 / 32768))
    for quiet in (("--normalize", "peak", "-o", out / "y.wav"),
                  ("--normalize", "none", "-o", out / "z.ogg")):  # Vorbis keeps the peaks
        result = cli(*args, *quiet)
        assert result.exit_code == 0 and "clipped" not in result.stderr
