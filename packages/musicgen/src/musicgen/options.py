"""GenerationOptions: every option of a generation, each with its default, defined once.

The Python API (``MusicGen.generate`` and kin) takes one; the CLI flags, the music tool's
options, batch job fields, the sidecar and a server's request schema derive from its fields
(``option_fields()``: name, type, default, help, metavar, flag), so a new option is one field
here. Inputs (the prompts, a melody, an audio prompt or its codes) are not options.

Values are checked when the options are made (an invalid GenerationOptions cannot exist);
``check`` adds what depends on the call: the number of prompts, the frame rate, the window.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from musicgen.errors import InvalidArgumentError

TRAINED_DURATION = 30.0  # seconds: the clips every MusicGen checkpoint was trained on
EXTEND_STRIDE = 18.0  # seconds a long-form window moves on from the one before (audiocraft's)
MAX_DURATION = 3600.0  # seconds; beyond TRAINED_DURATION the piece is generated in windows
SEED_LIMIT = 2**64  # seeds are mx.random keys: unsigned 64-bit integers


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _too_long(duration: float, limit: float) -> str:
    return (
        f"duration {duration} s is longer than the {limit:.0f} s supported; "
        "generate shorter pieces."
    )


def _duration(value: object) -> float:
    duration = _number("duration", value)
    if duration <= 0:
        raise InvalidArgumentError(f"duration must be > 0 seconds, got {duration}.")
    if duration > MAX_DURATION:
        raise InvalidArgumentError(_too_long(duration, MAX_DURATION))
    return duration


def _guidance_scale(value: object) -> float:
    if _number("guidance_scale", value) < 0:
        raise InvalidArgumentError(
            f"guidance_scale must be >= 0 (1 = no guidance, 3 is typical), got {value}."
        )
    return float(value)


def _top_k(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"top_k must be an integer >= 0 (0 = no limit), got {value!r}.")
    return int(value)


def _probability(name: str, off: str):
    def check(value: object) -> float:
        if not 0 <= _number(name, value) <= 1:
            raise InvalidArgumentError(f"{name} must be in [0, 1] ({off}), got {value}.")
        return float(value)

    return check


def _temperature(value: object) -> float:
    if _number("temperature", value) < 0:
        raise InvalidArgumentError(f"temperature must be >= 0 (0 = greedy), got {value}.")
    return float(value)


def _seed(seed: object) -> int | tuple[int, ...] | None:
    if isinstance(seed, Sequence) and not isinstance(seed, (str, bytes)):
        if not seed:
            raise InvalidArgumentError(
                "seed is a list of 0 seeds: give one seed per prompt, or one integer for the "
                "whole batch."
            )
        for i, value in enumerate(seed):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
                raise InvalidArgumentError(
                    f"seed {i} must be an integer in [0, 2**64), got {value!r}."
                )
        return tuple(int(value) for value in seed)
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT
    ):
        raise InvalidArgumentError(
            "seed must be None or an integer in [0, 2**64) (or a list of them, one per "
            f"prompt), got {seed!r}."
        )
    return None if seed is None else int(seed)


def _check_stride(stride: float, window: float) -> None:
    if not 0 < stride < window:
        raise InvalidArgumentError(
            f"extend_stride must be between 0 and {window:g} seconds ({EXTEND_STRIDE:g} is "
            f"typical: each window re-feeds the last {window:g} - extend_stride seconds), got "
            f"{stride:g}."
        )


def _extend_stride(value: object) -> float | None:
    if value is None:
        return None
    stride = _number("extend_stride", value)
    _check_stride(stride, TRAINED_DURATION)
    return stride


def _option(default: Any, type: type, metavar: str, help: str, check: Callable) -> Any:
    """A field with what a surface needs: ``type`` is the type of one value (as a command line
    parses it), ``help`` one line with the meaning and the range; ``check(value)`` validates a
    value and returns it normalized (or raises InvalidArgumentError)."""
    metadata = {"type": type, "metavar": metavar, "help": help, "check": check}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    """How to generate: duration, guidance, sampling, seed, long-form windows.

    ``GenerationOptions(duration=10, seed=7)``; change one with ``dataclasses.replace`` or
    ``options.replace(top_k=0)``. A bad value raises InvalidArgumentError (a ValueError) that
    says what is allowed. ``seed`` is one integer for the batch or one per prompt (a list, kept
    as a tuple); row b then samples as a batch of one with ``seed[b]`` would.
    """

    duration: float = _option(
        8.0,
        float,
        "SECONDS",
        f"Seconds of audio, > 0 and up to {MAX_DURATION:g}; beyond {TRAINED_DURATION:g} s the "
        "piece is generated in windows.",
        _duration,
    )
    guidance_scale: float = _option(
        3.0,
        float,
        "X",
        "Classifier-free guidance, >= 0: 1 = none (faster), 3 is typical.",
        _guidance_scale,
    )
    top_k: int = _option(
        250, int, "K", "Sample among the K most likely codes; 0 = no limit, 1 = greedy.", _top_k
    )
    top_p: float = _option(
        0.0,
        float,
        "P",
        "Nucleus sampling: the fewest codes whose probability reaches P, in [0, 1]; 0 = off.",
        _probability("top_p", "0 = no limit"),
    )
    min_p: float = _option(
        0.0,
        float,
        "P",
        "Keep codes at least P times as likely as the most likely one, in [0, 1]; 0 = off.",
        _probability("min_p", "0 = off"),
    )
    temperature: float = _option(
        1.0, float, "T", "Sampling temperature, >= 0: lower is safer, 0 = greedy.", _temperature
    )
    seed: int | tuple[int, ...] | None = _option(
        None,
        int,
        "N",
        "Random seed in [0, 2**64), or one per prompt; the same seed, prompt and options give "
        "the same codes (default: random).",
        _seed,
    )
    extend_stride: float | None = _option(
        None,
        float,
        "SECONDS",
        f"Long-form: seconds each {TRAINED_DURATION:g} s window moves on from the one before, "
        f"in (0, {TRAINED_DURATION:g}) (default: {EXTEND_STRIDE:g}).",
        _extend_stride,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](getattr(self, f.name)))

    def check(
        self,
        *,
        num_prompts: int | None = None,
        frame_rate: float | None = None,
        window: float | None = None,
    ) -> int | None:
        """Check what depends on the call; return the number of frames when ``frame_rate``
        (frames per second) is given.

        ``num_prompts``: a seed list must have one seed per prompt. ``frame_rate``: the duration
        must be at least one frame. ``window`` (seconds, the model's ``max_duration``): the
        long-form stride must be shorter.
        """
        seed = self.seed
        if isinstance(seed, tuple) and num_prompts is not None and len(seed) != num_prompts:
            raise InvalidArgumentError(
                f"seed is a list of {len(seed)} seeds for {num_prompts} prompts: give one seed "
                "per prompt, or one integer for the whole batch."
            )
        if window is not None and self.extend_stride is not None:
            _check_stride(self.extend_stride, window)
        if frame_rate is None:
            return None
        frames = round(self.duration * frame_rate)
        if frames < 1:
            raise InvalidArgumentError(
                f"duration {self.duration} s is shorter than one frame ({1 / frame_rate:.3g} s)."
            )
        return frames

    def replace(self, **changes: Any) -> GenerationOptions:
        """A copy with ``changes``; an unknown name is a TypeError, as for any call."""
        unknown = [name for name in changes if name not in _NAMES]
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}{_hint(unknown[0])}")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """Every option by name, JSON-ready (a seed list is a list)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(values["seed"], tuple):
            values["seed"] = list(values["seed"])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GenerationOptions:
        """Options from a mapping (a sidecar's parameters, a JSON request, a config section);
        missing names keep their defaults, an unknown name is an InvalidArgumentError."""
        if not isinstance(values, Mapping):
            raise InvalidArgumentError(
                f"generation options must be a mapping of names to values, got "
                f"{type(values).__name__}."
            )
        for name in values:
            if name not in _NAMES:
                raise InvalidArgumentError(
                    f"unknown generation option {name!r}{_hint(name)}; the options are "
                    f"{', '.join(_NAMES)}."
                )
        return cls(**values)


@dataclass(frozen=True)
class OptionField:
    """One option as a surface shows it: ``--flag METAVAR  help (default: default)``."""

    name: str
    type: type
    default: Any
    help: str
    metavar: str

    @property
    def flag(self) -> str:
        """The command-line flag: ``--guidance-scale`` for ``guidance_scale``."""
        return "--" + self.name.replace("_", "-")


def option_fields() -> tuple[OptionField, ...]:
    """The options in order, each with its type, default, help and metavar."""
    return tuple(
        OptionField(
            f.name, f.metadata["type"], f.default, f.metadata["help"], f.metadata["metavar"]
        )
        for f in dataclasses.fields(GenerationOptions)
    )


def options_from(
    options: GenerationOptions | None, overrides: Mapping[str, Any]
) -> GenerationOptions:
    """``options`` (default: the defaults) with keyword ``overrides``: what the model's methods
    do with their ``options`` argument and their keyword arguments."""
    if options is not None and not isinstance(options, GenerationOptions):
        raise InvalidArgumentError(
            f"options must be a musicgen.GenerationOptions, got {type(options).__name__}; pass "
            "single options as keyword arguments."
        )
    if options is None:
        options = DEFAULTS
    return options.replace(**overrides)


def check_options(
    *,
    frame_rate: float | None = None,
    max_duration: float = MAX_DURATION,
    num_prompts: int | None = None,
    **options: Any,
) -> int | None:
    """Compatibility form of ``GenerationOptions(**options).check(...)``: validate, return the
    number of frames when ``frame_rate`` is given. ``max_duration`` may only lower
    MAX_DURATION."""
    checked = GenerationOptions(**options)
    if checked.duration > max_duration:
        raise InvalidArgumentError(_too_long(checked.duration, max_duration))
    return checked.check(num_prompts=num_prompts, frame_rate=frame_rate)


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, list(_NAMES), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_NAMES = tuple(f.name for f in dataclasses.fields(GenerationOptions))  # in field order
DEFAULTS = GenerationOptions()
