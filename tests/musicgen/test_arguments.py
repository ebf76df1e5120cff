"""Bad arguments raise a ValueError that says what is allowed, before any work starts."""

from __future__ import annotations

import math
import re

import mlx.core as mx
import musicgen
import pytest
from musicgen import InvalidArgumentError
from rag_core.errors import RagError

GOOD = {"duration": 0.2, "guidance_scale": 3.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0}

BAD_PROMPTS = [
    ([], "empty"),
    ("", "empty"),
    (["calm", "   "], "prompt 1 is empty"),
    ([3], "prompt 0 must be a string"),
    (None, "must be a string or a list"),
]
BAD_OPTIONS = [
    ({"duration": 0}, "duration must be > 0"),
    ({"duration": -1.0}, "duration must be > 0"),
    ({"duration": math.nan}, "duration must be a finite number"),
    ({"duration": math.inf}, "duration must be a finite number"),
    ({"duration": 3601.0}, "longer than the 3600 s"),  # long-form's cap (musicgen.longform)
    ({"duration": "8"}, "duration must be a number"),
    ({"duration": 0.001}, "shorter than one frame"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_k": 2.5}, "top_k must be an integer >= 0"),
    ({"top_p": -0.1}, "top_p must be in [0, 1]"),
    ({"top_p": 1.5}, "top_p must be in [0, 1]"),
    ({"top_p": math.nan}, "top_p must be a finite number"),
    ({"min_p": -0.1}, "min_p must be in [0, 1]"),
    ({"min_p": 2}, "min_p must be in [0, 1]"),
    ({"min_p": math.nan}, "min_p must be a finite number"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
    ({"temperature": math.inf}, "temperature must be a finite number"),
    ({"guidance_scale": -1.0}, "guidance_scale must be >= 0"),
    ({"guidance_scale": True}, "guidance_scale must be a number"),
    ({"seed": -1}, "seed must be None or an integer"),
    ({"seed": 1.5}, "seed must be None or an integer"),
]


@pytest.fixture
def untouchable(tiny_model, monkeypatch):
    """The model, with every component raising if the arguments got as far as using it."""

    def boom(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for name in ("tokenizer", "text_encoder", "decoder"):
        monkeypatch.setattr(tiny_model, name, boom)
    return tiny_model


@pytest.mark.parametrize("method", ["generate_tokens", "generate", "stream_tokens"])
@pytest.mark.parametrize(("prompts", "message"), BAD_PROMPTS)
def test_bad_prompts(untouchable, method, prompts, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(untouchable, method)(prompts, **GOOD)


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options(untouchable, options, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)) as error:
        untouchable.generate_tokens(["calm"], **{**GOOD, **options})
    assert isinstance(error.value, ValueError) and isinstance(error.value, RagError)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (mx.zeros((1, 3, 5), mx.int32), r"shape \(batch, 4, frames\)"),
        (mx.zeros((4, 5), mx.int32), r"shape \(batch, 4, frames\)"),
        (mx.zeros((1, 4, 0), mx.int32), r"shape \(batch, 4, frames\)"),
        (mx.full((1, 4, 5), 32, mx.int32), r"in \[0, 32\)"),
        (mx.full((1, 4, 5), -1, mx.int32), r"in \[0, 32\)"),
        (mx.zeros((1, 4, 5), mx.float32), "integers"),
    ],
)
def test_bad_codes_for_decode(tiny_model, codes, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tiny_model.decode(codes)


def test_bad_dtype_for_load(tiny_path):
    with pytest.raises(ValueError, match="dtype must be one of float32, float16, bfloat16"):
        musicgen.load(tiny_path, dtype="int8")


@pytest.mark.parametrize("method", ["generate_tokens", "generate", "stream_tokens", "stream"])
def test_unknown_option_is_a_type_error(untouchable, method):
    """Every generation method takes generate_tokens' keywords, and only those."""
    with pytest.raises(TypeError, match="'bogus'"):
        getattr(untouchable, method)(["calm"], **GOOD, bogus=1)


def test_continuation_takes_no_prompt_codes(untouchable):
    with pytest.raises(TypeError, match="'prompt_codes'"):
        untouchable.generate_continuation(None, None, ["calm"], prompt_codes=None)
