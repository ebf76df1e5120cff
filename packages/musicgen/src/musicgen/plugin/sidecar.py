"""A track's record and its JSON sidecar: what was made, from what, how, and the command that
makes it again.

The record is what the tool returns; the sidecar (``a.wav.json``, musicgen.plugin.outputs) is
the record plus versions and a ``reproduce`` command. ``parameters`` holds every generation
option (``GenerationOptions.to_dict()``) and the track's own options that shape the audio;
the command is made from the same fields and flags, so both follow any new option.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag_core import mark_phase

from musicgen.audio import DEFAULT_NORMALIZE
from musicgen.options import GenerationOptions, option_fields
from musicgen.plugin.models import MusicModel
from musicgen.plugin.outputs import (
    check_free,
    find_sidecar,
    legacy_sidecar_path,
    reserve_output,
    sidecar_path,
    write_json,
)
from musicgen.plugin.prompt import MusicPrompt
from musicgen.plugin.smoke import NOTICE

SIDECAR_VERSION = 2  # 2: named track.wav.json; prompt_source without a copy of the prompt
# The track's options in ``parameters`` (when set) and their `mlx-rag music generate` flags.
TRACK_FLAGS = {"normalize": "--normalize", "melody": "--melody", "continue_from": "--continue",
               "stream": "--stream", "quantize": "--quantize", "dtype": "--dtype"}  # fmt: skip


def track_parameters(
    options: GenerationOptions,
    model: MusicModel,
    *,
    normalize: str,
    melody: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """``parameters`` of a track: every generation option, the normalization and the compute
    dtype, and the audio inputs, streaming and quantization when used."""
    parameters = {**options.to_dict(), "normalize": normalize,
                  "dtype": model.precision.dtype}  # fmt: skip
    for key, value in (("melody", melody), ("continue_from", continue_from)):
        if value is not None:
            parameters[key] = str(value)
    if stream:
        parameters["stream"] = True
    if model.precision.quantize is not None:
        parameters["quantize"] = model.precision.quantize
    return parameters


def track_record(
    path: Path,
    prompt: MusicPrompt,
    *,
    model: str,
    loaded: MusicModel,
    parameters: dict,
    channels: int,
    samples: int,
) -> dict:
    """The result record of a track written to ``path`` (the sidecar's content, but the
    timings and what ``sidecar`` adds). ``model`` is the id as asked for; the prompt is stored
    once, in ``prompt``."""
    sample_rate = loaded.model.sample_rate
    record = {
        "path": str(path.resolve()),
        "sidecar": str(sidecar_path(path).resolve()),
        "format": path.suffix[1:].lower(),
        "prompt": prompt.text,
        "prompt_source": {k: v for k, v in prompt.to_dict().items() if k != "text"},
        "model": model,
        "model_source": loaded.weights.location,
        "untrained": loaded.untrained,
        "seed": parameters["seed"],
        "parameters": parameters,
        "duration": round(samples / sample_rate, 4),
        "sample_rate": sample_rate,
        "channels": channels,
        "quantize": loaded.precision.quantize,
    }
    if loaded.untrained:
        record["notice"] = NOTICE
    return record


def write_track(
    path: Path,
    audio: Any,
    record: dict,
    *,
    normalize: str = DEFAULT_NORMALIZE,
    overwrite: bool = False,
    tmp: Path | None = None,
    started: float | None = None,
) -> dict:
    """Write ``audio`` (channels, samples) to ``path``, then its sidecar; return the sidecar.

    The audio goes through a temporary file renamed into place (``tmp``: one already reserved
    with ``reserve_output``; ``audio=None``: ``tmp`` already holds it, as after streaming).
    An older sidecar of the same track (``track.json``) is removed once the new one is written.
    ``record["timings"]`` gets ``write_s``, and ``total_s`` since ``started``.
    """
    from musicgen.audio import save_audio

    begin = time.perf_counter()
    with contextlib.nullcontext(tmp) if tmp is not None else reserve_output(path, overwrite) as tmp:
        if audio is not None:
            save_audio(tmp, audio, record["sample_rate"], normalize=normalize,
                       format=path.suffix)
        check_free(path, overwrite, when="appeared while generating")
        legacy = find_sidecar(path) if overwrite else None
        os.replace(tmp, path)
    done = time.perf_counter()
    timings = {**record.get("timings", {}), "write_s": round(done - begin, 3)}
    if started is not None:
        timings["total_s"] = round(done - started, 3)
    data = sidecar({**record, "timings": timings})
    write_json(sidecar_path(path), data)
    if legacy is not None and legacy == legacy_sidecar_path(path):  # it described the old audio
        legacy.unlink(missing_ok=True)
    mark_phase("sidecar")
    return data


def _value(value: Any) -> str:
    """A value as a command line gives it back exactly: 3.0 -> "3", 0.1 -> "0.1"."""
    if isinstance(value, float):
        return f"{value:g}" if value.is_integer() else repr(value)
    return str(value)


def reproduce_command(record: dict) -> str:
    """The `mlx-rag music generate` command that makes the track of ``record`` again (its
    prompt, model, every generation option, the track's options, the same file name)."""
    p = record["parameters"]
    command = ["mlx-rag", "music", "generate", record["prompt"], "--model", record["model"]]
    for field in option_fields():
        value = p.get(field.name, record["seed"] if field.name == "seed" else None)
        if value is not None:
            command += [field.flag, _value(value)]
    for key, flag in TRACK_FLAGS.items():
        value = p.get(key)
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:
            command += [flag, _value(value)]
    return shlex.join([*command, "--output", Path(record["path"]).name])


def sidecar(record: dict) -> dict:
    """The sidecar: the result record plus what it takes to reproduce the track."""
    from importlib.metadata import PackageNotFoundError, version

    def version_of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return {
        "sidecar_version": SIDECAR_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": {
            "musicgen": version_of("mlx-rag-musicgen"),
            "rag_core": version_of("rag-core"),
            "mlx": version_of("mlx"),
            "python": sys.version.split()[0],
        },
        **record,
        "reproduce": reproduce_command(record),
    }
