"""The music tool's options: where the prompt comes from, how to generate, and the track.

How to generate is ``musicgen.GenerationOptions`` (its fields, via ``option_fields()``, each
with its one default and check); where the prompt comes from is ``PromptOptions``; the model,
its precision and the file are ``TrackOptions``. The tool's signature (what a pipeline step
and ``[tools.music]`` may set), the `mlx-rag music` flags, batch job fields and the sidecar
are all made from these three, so an option is defined once, in one of them. Each dataclass
checks its values when it is made.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from musicgen.audio import DEFAULT_NORMALIZE, NORMALIZE_MODES
from musicgen.errors import InvalidArgumentError
from musicgen.options import GenerationOptions, option_fields
from musicgen.plugin.outputs import FORMATS
from musicgen.plugin.prompt import PROMPT_FROM

DEFAULT_MODEL = "facebook/musicgen-small"
INPUTS = ("auto", "answer", "retrieved", "question")
DTYPES = ("float32", "float16", "bfloat16")  # and "auto": the device's (musicgen.plugin.models)


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise InvalidArgumentError(
            f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}."
        )


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be true or false, got {value!r}.")


def _text(name: str, value: Any, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidArgumentError(f"{name} must be a non-empty string ({what}), got {value!r}.")


def check_quantize(quantize: Any) -> int | None:
    """None (full precision), 4 or 8; InvalidArgumentError otherwise."""
    if quantize is not None and (type(quantize) is not int or quantize not in (4, 8)):
        raise InvalidArgumentError(
            f"quantize must be 4 or 8 (bits per decoder weight), got {quantize!r}; leave it "
            "out for full precision."
        )
    return quantize


def check_dtype(dtype: Any) -> str:
    """"auto" (the device's: float16 on a GPU, float32 on the CPU) or one of DTYPES."""
    _one_of("dtype", dtype, ("auto", *DTYPES))
    return dtype


@dataclass(frozen=True, kw_only=True)
class PromptOptions:
    """Where the music prompt comes from: ``prompt`` as it is, else built from ``text``, else
    from the pipeline's ``input`` ("auto": the answer, the retrieved passages or the question,
    the first that exists), by the LLM or the cue extractor (``prompt_from``)."""

    input: str = "auto"
    text: str | None = None
    prompt: str | None = None
    prompt_from: str = "auto"
    llm: str | None = None

    def __post_init__(self) -> None:
        _one_of("input", self.input, INPUTS)
        if self.text is not None and not isinstance(self.text, str):
            raise InvalidArgumentError(f"text must be a string, got {type(self.text).__name__}.")
        _text("prompt", self.prompt, "the music prompt")
        _one_of("prompt_from", self.prompt_from, PROMPT_FROM)
        _text("llm", self.llm, "an LLM id")


@dataclass(frozen=True, kw_only=True)
class TrackOptions:
    """The model and its precision, and where and how the audio is written.

    ``output``: a file (.wav, .flac, .ogg) or a folder (default: the music folder in the data
    dir); ``format`` when ``output`` is a folder. ``melody``: an audio file whose melody
    conditions the music (MusicGen-Melody models). ``continue_from``: an audio file the track
    continues (``duration`` counts it). ``stream``: write the .wav/.flac file while generating
    (clipped, not normalized). ``quantize``: 4 or 8 bits per decoder weight. ``dtype``: the
    compute type, "auto" for the device's.
    """

    model: str = DEFAULT_MODEL
    output: str | os.PathLike | None = None
    format: str | None = None
    normalize: str = DEFAULT_NORMALIZE
    overwrite: bool = False
    melody: str | os.PathLike | None = None
    continue_from: str | os.PathLike | None = None
    stream: bool = False
    quantize: int | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidArgumentError(f"model must be a model id such as {DEFAULT_MODEL} or a "
                                       f"local MusicGen folder, got {self.model!r}.")
        if self.format is not None:
            _one_of("format", self.format, FORMATS)
        _one_of("normalize", self.normalize, NORMALIZE_MODES)
        _flag("overwrite", self.overwrite)
        _flag("stream", self.stream)
        check_quantize(self.quantize)
        check_dtype(self.dtype)


GENERATION = tuple(f.name for f in option_fields())
PROMPT = tuple(f.name for f in dataclasses.fields(PromptOptions))
TRACK = tuple(f.name for f in dataclasses.fields(TrackOptions))


def tool_defaults() -> dict[str, Any]:
    """Every option of the `music` tool with its default, in the order of its signature: the
    prompt's, the model, how to generate, the rest of the track's."""
    defaults = {f.name: f.default for f in dataclasses.fields(PromptOptions)}
    defaults["model"] = TrackOptions.model
    defaults.update((f.name, f.default) for f in option_fields())
    defaults.update((f.name, f.default) for f in dataclasses.fields(TrackOptions))
    return defaults


def tool_signature() -> inspect.Signature:
    """``run(state, *, <every option>=<its default>)``: the signature rag_core reads the
    tool's options from (``Tool.option_names``), and Python binds calls against."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature([
        inspect.Parameter("state", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(inspect.Parameter(name, keyword, default=default)
          for name, default in tool_defaults().items()),
    ])  # fmt: skip


def split_options(values: Mapping[str, Any]) -> tuple[PromptOptions, GenerationOptions,
                                                      TrackOptions]:
    """``values`` (tool options by name; missing ones keep their defaults) as the three
    option sets, each checked once as it is made. An unknown name is a TypeError, as for a
    call with an unexpected keyword argument."""
    unknown = [name for name in values if name not in (*PROMPT, *GENERATION, *TRACK)]
    if unknown:
        raise TypeError(f"the music tool got an unexpected option {unknown[0]!r}")

    def pick(names: tuple[str, ...]) -> dict[str, Any]:
        return {name: values[name] for name in names if name in values}

    return (PromptOptions(**pick(PROMPT)), GenerationOptions(**pick(GENERATION)),
            TrackOptions(**pick(TRACK)))  # fmt: skip
