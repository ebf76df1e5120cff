"""Batch jobs: one JSON object per line of a JSONL file, checked with line numbers.

A job names its input with exactly one of ``prompt`` (used as is), ``text`` (source text the
prompt is built from) or ``query`` (retrieved from the store, then built into a prompt), and may
set ``id``, ``duration``, ``seed``, ``guidance_scale``, ``top_k``, ``top_p``, ``temperature``,
``model`` and ``format``. Anything else is an error. A job without a seed gets one derived from
its id and input, so a rerun reproduces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from musicgen.audio import DEFAULT_NORMALIZE, NORMALIZE_MODES
from musicgen.errors import InvalidArgumentError, MusicGenError
from musicgen.plugin.outputs import FORMATS
from musicgen.plugin.tool import DEFAULT_MODEL, Sampling

INPUT_FIELDS = ("prompt", "text", "query")
OPTION_FIELDS = ("duration", "seed", "guidance_scale", "top_k", "top_p", "temperature", "model",
                 "format")
JOB_FIELDS = ("id", *INPUT_FIELDS, *OPTION_FIELDS)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SEED_LIMIT = 2**63  # derived seeds stay below this


class JobsError(MusicGenError, ValueError):
    """The jobs file cannot be used (unreadable, or bad lines under --strict)."""


@dataclass(frozen=True)
class Options:
    """Generation options of a job: its own values over the command's (the music tool's)."""

    model: str = DEFAULT_MODEL
    duration: float = Sampling.duration
    guidance_scale: float = Sampling.guidance_scale
    top_k: int = Sampling.top_k
    top_p: float = Sampling.top_p
    temperature: float = Sampling.temperature
    format: str = "wav"
    normalize: str = DEFAULT_NORMALIZE

    def sampling(self) -> Sampling:
        return Sampling(self.duration, self.guidance_scale, self.top_k, self.top_p,
                        self.temperature)

    def check(self) -> Options:
        """Raise InvalidArgumentError for a bad value; return the options with floats as floats."""
        self.sampling().check()
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidArgumentError(f"model must be a model id or a local directory, "
                                       f"got {self.model!r}.")
        if self.format not in FORMATS:
            raise InvalidArgumentError(f"format must be one of {', '.join(FORMATS)}, "
                                       f"got {self.format!r}.")
        if self.normalize not in NORMALIZE_MODES:
            raise InvalidArgumentError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, "
                                       f"got {self.normalize!r}.")
        return replace(self, duration=float(self.duration),
                       guidance_scale=float(self.guidance_scale), top_p=float(self.top_p),
                       temperature=float(self.temperature))


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
    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one generate call (seeds are per job)."""
        o = self.options
        return (o.model, o.duration, o.guidance_scale, o.top_k, o.top_p, o.temperature)

    @property
    def audio_name(self) -> str:
        return f"{self.id}.{self.options.format}"

    @property
    def sidecar_name(self) -> str:
        """``ID.FORMAT.json`` (earlier versions wrote ``ID.json``, which is still read)."""
        return f"{self.audio_name}.json"

    def parameters(self) -> dict[str, Any]:
        """Everything that determines the job's output, as stored in its sidecar."""
        return {"id": self.id, "source": self.source, "input": self.input, "seed": self.seed,
                **asdict(self.options)}


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
    options = replace(defaults, **{k: data[k] for k in OPTION_FIELDS if k in data and k != "seed"})
    options = options.check()
    seed = data.get("seed")
    if seed is not None:
        options.sampling().check(seed)
    job = Job(line, job_id, source, text,
              seed if seed is not None else derived_seed(job_id, source, text), options,
              seed_given=seed is not None)
    return replace(job, digest=job_digest(job))


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
    defaults = (defaults or Options()).check()
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
