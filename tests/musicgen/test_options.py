"""GenerationOptions: one definition of a generation's options that every method takes, with
its defaults, its checks and the metadata surfaces derive from."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import mlx.core as mx
import musicgen
import numpy as np
import pytest
from musicgen import GenerationOptions, InvalidArgumentError, option_fields
from musicgen.options import DEFAULTS

from tests.musicgen.checkpoints import PROMPTS

NAMES = [
    "duration",
    "guidance_scale",
    "top_k",
    "top_p",
    "min_p",
    "temperature",
    "seed",
    "extend_stride",
]
METHODS = ["generate", "generate_tokens", "stream", "stream_tokens", "generate_continuation"]


def test_the_fields_carry_what_a_surface_needs():
    fields = option_fields()
    assert [f.name for f in fields] == NAMES == [f.name for f in dataclasses.fields(DEFAULTS)]
    for f in fields:
        assert f.type in (int, float) and f.metavar.isupper()
        assert f.help.endswith(".") and "\n" not in f.help and len(f.help) < 140
        assert f.default == getattr(GenerationOptions(), f.name)
        assert f.flag == "--" + f.name.replace("_", "-")
    assert {f.name: f.default for f in fields} == {
        "duration": 8.0,
        "guidance_scale": 3.0,
        "top_k": 250,
        "top_p": 0.0,
        "min_p": 0.0,
        "temperature": 1.0,
        "seed": None,
        "extend_stride": None,
    }
    assert str(int(musicgen.MAX_DURATION)) in fields[0].help


@pytest.mark.parametrize("method", METHODS)
def test_no_method_lists_an_option_again(method):
    """The methods take ``options`` and keyword overrides: no option has a second default."""
    parameters = inspect.signature(getattr(musicgen.MusicGen, method)).parameters
    assert "options" in parameters
    assert not set(parameters) & set(NAMES)


def test_keywords_build_or_override_the_options(tiny_model):
    options = GenerationOptions(duration=0.3, seed=1, top_k=8)
    by_object = np.array(tiny_model.generate_tokens(PROMPTS[:2], options))
    by_keywords = np.array(tiny_model.generate_tokens(PROMPTS[:2], duration=0.3, seed=1, top_k=8))
    assert np.array_equal(by_object, by_keywords)
    overridden = np.array(tiny_model.generate_tokens(PROMPTS[:2], options, seed=2))
    replaced = np.array(tiny_model.generate_tokens(PROMPTS[:2], options.replace(seed=2)))
    assert np.array_equal(overridden, replaced)
    assert not np.array_equal(overridden, by_object)
    audio = tiny_model.generate(PROMPTS[:2], options)
    assert np.array_equal(np.array(audio), np.array(tiny_model.decode(mx.array(by_object))))


def test_values_are_checked_and_normalized_when_made():
    options = GenerationOptions(duration=2, guidance_scale=1, seed=[1, 2], extend_stride=12)
    assert options.duration == 2.0 and isinstance(options.duration, float)
    assert options.seed == (1, 2) and hash(options)  # frozen and hashable
    with pytest.raises(InvalidArgumentError, match="min_p must be in"):
        GenerationOptions(min_p=1.5)
    with pytest.raises(InvalidArgumentError, match="longer than the 3600 s"):
        GenerationOptions().replace(duration=musicgen.MAX_DURATION + 1)
    with pytest.raises(TypeError, match="'topk' \\(did you mean 'top_k'\\?\\)"):
        GenerationOptions().replace(topk=3)
    with pytest.raises(TypeError):
        GenerationOptions(8.0)  # keyword-only: the field order is not an API


def test_check_covers_what_depends_on_the_call():
    options = GenerationOptions(duration=1.0, seed=[1, 2], extend_stride=10.0)
    assert options.check(num_prompts=2, frame_rate=50, window=30.0) == 50
    assert options.check() is None
    with pytest.raises(InvalidArgumentError, match="list of 2 seeds for 3 prompts"):
        options.check(num_prompts=3)
    with pytest.raises(InvalidArgumentError, match="extend_stride must be between 0 and 5"):
        options.check(window=5.0)
    with pytest.raises(InvalidArgumentError, match="shorter than one frame"):
        GenerationOptions(duration=0.001).check(frame_rate=50)


def test_dict_round_trip_and_unknown_keys():
    options = GenerationOptions(duration=12.5, min_p=0.05, seed=[3, 4], extend_stride=20)
    data = json.loads(json.dumps(options.to_dict()))
    assert list(data) == NAMES and data["seed"] == [3, 4]
    assert GenerationOptions.from_dict(data) == options
    assert GenerationOptions.from_dict({}) == GenerationOptions()
    unknown = r"unknown generation option 'temprature' \(did you mean 'temperature'\?\); the"
    with pytest.raises(InvalidArgumentError, match=unknown + " options are duration, "):
        GenerationOptions.from_dict({"temprature": 0.5})
    with pytest.raises(InvalidArgumentError, match="must be a mapping"):
        GenerationOptions.from_dict([("duration", 1.0)])
    with pytest.raises(InvalidArgumentError, match="top_k must be an integer"):
        GenerationOptions.from_dict({"top_k": "250"})


def test_options_must_be_generation_options(tiny_model):
    with pytest.raises(
        InvalidArgumentError, match=r"options must be a musicgen\.GenerationOptions"
    ):
        tiny_model.generate_tokens("calm", {"duration": 1.0})


def test_max_duration_is_the_limit_every_method_enforces(tiny_model):
    steps = tiny_model.stream_tokens("calm", duration=musicgen.MAX_DURATION, seed=0)
    steps.close()  # planned, never run
    message = re.escape(f"longer than the {musicgen.MAX_DURATION:.0f} s supported")
    for method in ("stream_tokens", "generate_tokens", "generate", "stream"):
        with pytest.raises(InvalidArgumentError, match=message):
            getattr(tiny_model, method)("calm", duration=musicgen.MAX_DURATION + 0.5)
    from musicgen.longform import LONGFORM_MAX_DURATION

    assert LONGFORM_MAX_DURATION == musicgen.MAX_DURATION == 3600.0


def test_check_options_still_validates_and_counts_frames():
    good = {"duration": 0.5, "guidance_scale": 3.0, "top_k": 250, "top_p": 0.0,
            "temperature": 1.0, "seed": None}  # fmt: skip
    assert musicgen.check_options(**good, frame_rate=50) == 25
    assert musicgen.check_options(**good) is None
    with pytest.raises(InvalidArgumentError, match="longer than the 30 s supported"):
        musicgen.check_options(**{**good, "duration": 31.0}, max_duration=30.0)
    with pytest.raises(InvalidArgumentError, match="temperature must be >= 0"):
        musicgen.check_options(**{**good, "temperature": -1.0})


def test_the_lower_level_functions_take_the_same_defaults():
    for function in (musicgen.make_sampler, musicgen.generate_step):
        for name, parameter in inspect.signature(function).parameters.items():
            if name in NAMES and parameter.default is not inspect.Parameter.empty:
                assert parameter.default == getattr(DEFAULTS, name), (function.__name__, name)


def test_every_option_is_in_the_documented_table():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "musicgen-features.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", doc, re.MULTILINE))
    for f in option_fields():
        assert rows.get(f.name) == repr(f.default), f.name
