"""Batch jobs: one JSON object per line of a JSONL file, checked with line numbers.

A job names its input with exactly one of ``prompt`` (used as is), ``text`` (source text the
prompt is built from) or ``query`` (retrieved from the store, then built into a prompt), and may
set ``id``, ``model``, ``format`` and any generation option (a ``musicgen.GenerationOptions``
field: ``duration``, ``seed``, ``guidance_scale``, ``top_k``, ``top_p``, ``min_p``, ...).
Anything else is an error. A job without a seed gets one derived from its id and input, so a
rerun reproduces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from musicgen.errors import InvalidArgumentError, MusicGenError
from musicgen.options import DEFAULTS, GenerationOptions
from musicgen.plugin.models import choose_precision
from musicgen.plugin.options import DEFAULT_MODEL, GENERATION, TrackOptions

INPUT_FIELDS = ("prompt", "text", "query")
OPTION_FIELDS = (*GENERATION, "model", "format")  # what a job may set besides its input and id
JOB_FIELDS = ("id", *INPUT_FIELDS, *OPTION_FIELDS)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SEED_LIMIT = 2**63  # derived seeds stay below this
# What the first version hashed, always; any later option only when it changes the output
# from what that version made, so finished jobs of earlier versions are still found.
FIRST_HASHED = ("model", "duration", "guidance_scale", "top_k", "top_p", "temperature", "format",
                "normalize")  # fmt: skip
FIRST_VALUES = {**DEFAULTS.to_dict(), "quantize": None, "dtype": "float32"}


class JobsError(MusicGenError, ValueError):
    """The jobs file cannot be used (unreadable, or bad lines under --strict)."""


@dataclass(frozen=True)
class Options:
    """A job's options, its own values over the command's: how to generate (its seed is the
    job's, not here), the model and its precision (``quantize`` and ``dtype`` apply to every
    job), and the audio file. Values are checked when the options are made."""

    generation: GenerationOptions = DEFAULTS
    model: str = DEFAULT_MODEL
    format: str = "wav"
    normalize: str = TrackOptions.normalize
    quantize: int | None = None
    dtype: str = "auto"

    # Their flat names: the generation options but the seed, and the others.
    NAMES = (*(n for n in GENERATION if n != "seed"), "model", "format", "normalize", "quantize",
             "dtype")  # fmt: skip

    def __post_init__(self) -> None:
        if self.generation.seed is not None:
            raise InvalidArgumentError("a job's seed belongs to the job, not to its options.")
        TrackOptions(model=self.model, format=self.format, normalize=self.normalize,
                     quantize=self.quantize, dtype=self.dtype)  # fmt: skip

    @classmethod
    def of(cls, **values: Any) -> Options:
        """Options from flat names: ``Options.of(model="m", duration=2.0, top_k=0)``."""
        generation = {name: values.pop(name) for name in GENERATION if name in values}
        return cls(GenerationOptions(**generation), **values)

    def with_values(self, values: dict[str, Any]) -> Options:
        """These options with a job's own ``values`` (flat names, no seed)."""
        generation = {name: values[name] for name in GENERATION if name in values}
        own = {name: values[name] for name in ("model", "format") if name in values}
        return replace(self, generation=self.generation.replace(**generation), **own)

    def values(self) -> dict[str, Any]:
        """Every option by its flat name (the generation options but the seed)."""
        generation = {k: v for k, v in self.generation.to_dict().items() if k != "seed"}
        return {**generation, "model": self.model, "format": self.format,
                "normalize": self.normalize, "quantize": self.quantize, "dtype": self.dtype}


@dataclass(frozen=True)
class Job:
    """One checked job: where it came from, its input, its seed and its options."""

    line: int
    id: str
    source: str  # "prompt" | "text" | "query"
    input: str
    seed: int
    options: Options
    seed_given: bool = True
    digest: str = field(default="", compare=False)

    @property
    def generation(self) -> GenerationOptions:
        """How the job is generated, its seed included."""
        return self.options.generation.replace(seed=self.seed)

    @property
    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one generate call (seeds are per job)."""
        o = self.options
        return (o.model, o.quantize, o.dtype, o.generation)

    @property
    def audio_name(self) -> str:
        return f"{self.id}.{self.options.format}"

    @property
    def sidecar_name(self) -> str:
        """``ID.FORMAT.json`` (earlier versions wrote ``ID.json``, which is still read)."""
        return f"{self.audio_name}.json"

    def parameters(self) -> dict[str, Any]:
        """Everything that determines the job's output, as its hash covers it: the options
        of the first version always, later ones when they change the output (the precision
        as it resolves here: "auto" is this device's dtype)."""
        _, precision = choose_precision(self.options.model, self.options.quantize,
                                        self.options.dtype)  # fmt: skip
        values = {**self.options.values(), "quantize": precision.quantize,
                  "dtype": precision.dtype}  # fmt: skip
        hashed = {k: v for k, v in values.items()
                  if k in FIRST_HASHED or v != FIRST_VALUES.get(k)}  # fmt: skip
        return {"id": self.id, "source": self.source, "input": self.input, "seed": self.seed,
                **hashed}


def job_digest(job: Job) -> str:
    """The hash of a job's parameters: an existing output whose sidecar records it is reused."""
    blob = json.dumps(job.parameters(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def derived_seed(job_id: str, source: str, text: str) -> int:
    """A seed for a job that gave none: stable across runs, different between jobs."""
    digest = hashlib.sha256(f"{job_id}\0{source}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % SEED_LIMIT


@dataclass(frozen=True)
class BadLine:
    """A job line that was rejected, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class JobList:
    """The checked jobs of a file, in file order, and the lines that were rejected."""

    path: Path
    jobs: list[Job]
    bad: list[BadLine]

    def report(self) -> str:
        """One line per bad job line, ``FILE:LINE: message``."""
        return "\n".join(f"{self.path}:{b.line}: {b.message}" for b in self.bad)


def parse_job(raw: str, line: int, defaults: Options) -> Job:
    """One JSONL line -> a Job; InvalidArgumentError says what is wrong with it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"a job must be a JSON object, got {type(data).__name__}.")
    unknown = sorted(set(data) - set(JOB_FIELDS))
    if unknown:
        raise InvalidArgumentError(f"unknown field{'s' if len(unknown) > 1 else ''} "
                                   f"{', '.join(map(repr, unknown))} (a job may have: "
                                   f"{', '.join(JOB_FIELDS)}).")
    given = [name for name in INPUT_FIELDS if name in data]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        raise InvalidArgumentError(f"a job needs exactly one of 'prompt', 'text' or 'query' "
                                   f"(got {which}).")
    source = given[0]
    text = data[source]
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(f"'{source}' must be a non-empty string, got {text!r}.")
    job_id = _job_id(data.get("id"), line)
    options = defaults.with_values({k: v for k, v in data.items()
                                    if k in OPTION_FIELDS and k != "seed"})  # fmt: skip
    seed = data.get("seed")
    if seed is not None:
        if isinstance(seed, list):
            raise InvalidArgumentError(f"a job's seed is one integer, got {seed!r}.")
        seed = options.generation.replace(seed=seed).seed
    job = Job(line, job_id, source, text,
              seed if seed is not None else derived_seed(job_id, source, text), options,
              seed_given=seed is not None)
    return replace(job, digest=job_digest(job))  # a model contradicting quantize/dtype fails here


def _model_problem(check_model: Callable[[str], None], model: str) -> str | None:
    try:
        check_model(model)
    except ValueError as exc:
        return str(exc)
    return None


def _job_id(value: Any, line: int) -> str:
    if value is None:
        return f"job-{line:05d}"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidArgumentError(
            f"'id' must be 1-100 letters, digits, '.', '_' or '-' starting with a letter or "
            f"digit (it names the output files), got {value!r}."
        )
    return value


def read_jobs(path: str | os.PathLike, defaults: Options | None = None, *,
              strict: bool = False,
              check_model: Callable[[str], None] | None = None,
              check_job: Callable[[Job], None] | None = None) -> JobList:
    """Read and check every line of a JSONL jobs file (blank lines are ignored).

    Bad lines are collected with their line numbers; with ``strict`` any bad line raises
    JobsError listing all of them, before any work is done. ``check_model(id)`` raises
    ValueError for a model that cannot be used; it is called once per model. ``check_job``
    raises InvalidArgumentError for a job its model cannot make (after ``check_model``).
    """
    path = Path(path)
    defaults = defaults or Options()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JobsError(f"The jobs file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsError(f"Cannot read the jobs file {path}: {exc}.") from None
    jobs: list[Job] = []
    bad: list[BadLine] = []
    seen: dict[str, int] = {}
    models: dict[str, str | None] = {}  # model -> why it cannot be used, or None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            job = parse_job(raw, number, defaults)
            if check_model is not None:
                if job.options.model not in models:
                    models[job.options.model] = _model_problem(check_model, job.options.model)
                if models[job.options.model]:
                    raise InvalidArgumentError(models[job.options.model])
            if check_job is not None:
                check_job(job)
        except InvalidArgumentError as exc:
            bad.append(BadLine(number, str(exc)))
            continue
        if job.id in seen:
            bad.append(BadLine(number, f"id {job.id!r} is already used on line {seen[job.id]}; "
                                       "ids name the output files and must be unique."))
            continue
        seen[job.id] = number
        jobs.append(job)
    result = JobList(path, jobs, bad)
    if bad and not jobs:
        raise JobsError(f"None of the jobs in {path} can run:\n{result.report()}")
    if strict and bad:
        raise JobsError(f"{len(bad)} bad line{'s' if len(bad) > 1 else ''} in {path} "
                        f"(--strict stops before any work):\n{result.report()}")
    if not jobs and not bad:
        raise JobsError(f"The jobs file {path} has no jobs: write one JSON object per line, "
                        'e.g. {"prompt": "lofi piano, rain", "seed": 1}.')
    return result
