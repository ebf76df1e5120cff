"""Request fields: types, ranges and whole dataclasses, every error naming its field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from rag_core.server.errors import HTTPError
from rag_core.server.requests import Fields


@dataclass
class Options:
    duration: float = 8.0
    steps: int | None = None
    format: Literal["wav", "flac"] = "wav"
    tags: tuple[str, ...] = ()
    stereo: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")


def fails(call, param: str | None, words: str) -> None:
    with pytest.raises(HTTPError) as caught:
        call()
    assert caught.value.status == 400 and caught.value.field == param
    assert words in str(caught.value)


def test_a_dataclass_from_json_fields_by_their_type_hints():
    options = Fields({"seconds": 3, "format": "flac", "tags": ["a", "b"], "steps": None}
                     ).dataclass(Options, {"seconds": "duration"})
    assert options == Options(duration=3.0, format="flac", tags=("a", "b"))
    assert isinstance(options.duration, float)


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"seconds": "long"}, "seconds", "'seconds' must be a number, got a string"),
    ({"seconds": True}, "seconds", "must be a number, got a boolean"),
    ({"steps": 2.5}, "steps", "must be an integer"),
    ({"format": "mp3"}, "format", "must be one of 'wav', 'flac'"),
    ({"tags": "a"}, "tags", "must be an array"),
    ({"tags": ["a", 3]}, "tags[1]", "must be a string"),
    ({"stereo": 1}, "stereo", "true or false"),
    ({"extra": []}, "extra", "must be an object"),
    ({"seconds": -1}, "seconds", "duration must be > 0"),  # the dataclass's own check
])  # fmt: skip
def test_dataclass_errors_name_the_json_field(body, param, words):
    fails(lambda: Fields(body, prefix="").dataclass(Options, {"seconds": "duration"}), param,
          words)


def test_field_getters():
    body = Fields({"q": "x", "k": 3, "t": 0.5, "on": True}, allowed=("q", "k", "t", "on", "m"))
    assert (body.text("q"), body.integer("k"), body.number("t"), body.flag("on")) == (
        "x", 3, 0.5, True)
    assert body.text("m", "default") == "default" and body.flag("m") is False
    fails(lambda: Fields({"zz": 1}, allowed=("q",)), "zz", "not a known field (known: q)")
    fails(lambda: body.integer("k", maximum=2), "k", "at most 2")
    fails(lambda: body.text("m", required=True), "m", "is required")
    fails(lambda: Fields({"q": "x" * 5}).text("q", max_length=4), "q", "longer than 4")
    fails(lambda: Fields({"n": 1}, prefix="options.").text("n"), "options.n", "'options.n'")
