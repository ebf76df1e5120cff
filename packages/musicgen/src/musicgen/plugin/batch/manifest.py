"""A batch's outputs: which jobs are finished (their sidecars), the manifest, leftovers.

A job is finished when its audio and its sidecar are there and the sidecar's ``batch.job_hash``
is the job's digest (musicgen.plugin.batch.jobs). Each rank appends a line per finished job to
``manifest.rank{R}.jsonl`` while it runs; rank 0 writes ``manifest.jsonl`` at the end.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path

from musicgen.plugin.batch.jobs import Job
from musicgen.plugin.outputs import find_sidecar, write_text_atomic

MANIFEST = "manifest.jsonl"
PARTIAL = "manifest.rank{rank}.jsonl"
PARTIAL_PATTERN = re.compile(r"manifest\.rank\d+\.jsonl")
OLD_MANIFEST_PART = f".{MANIFEST}.part"  # the manifest's temporary name in earlier versions


def read_sidecar(job: Job, out: Path) -> dict | None:
    """The job's sidecar if the job is finished: audio present and the hash matching."""
    audio = out / job.audio_name
    sidecar = find_sidecar(audio)
    if sidecar is None:
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        matches = data["batch"]["job_hash"] == job.digest
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (matches and audio.is_file() and audio.stat().st_size > 0):
        return None
    return {**data, "sidecar": str(sidecar.resolve())}  # the file it is in (maybe an old name)


def manifest_entry(job: Job, data: dict) -> dict:
    """A manifest line from a finished job's sidecar."""
    batch = data["batch"]
    return {
        "id": job.id,
        "line": job.line,
        "output": job.audio_name,
        "sidecar": Path(data.get("sidecar") or job.sidecar_name).name,
        "prompt": data["prompt"],
        "model": data["model"],
        "seed": data["seed"],
        "duration": data["duration"],
        "untrained": data.get("untrained", False),
        "rank": batch["rank"],
        "host": batch["host"],
        "batch_size": batch["batch_size"],
        "timings": data["timings"],
        "created": data.get("created"),
    }


# Temporary names of earlier versions: ``.ID.<hex>.part.FORMAT`` (audio), ``.ID.json.part``
# (sidecar). They carry no process id; the job's rank owns them.
LEFTOVER = re.compile(r"\.(?P<id>.+)\.(?:[0-9a-f]+\.part\.\w+|json\.part)")


def is_leftover(name: str, ids: Collection[str]) -> bool:
    """Whether ``name`` is a temporary file that a killed run of an earlier version left
    behind for one of the jobs ``ids``."""
    match = LEFTOVER.fullmatch(name)
    return match is not None and match["id"] in ids


def remove_leftovers(jobs: Iterable[Job], out: Path) -> None:
    """Remove the earlier versions' temporary files of ``jobs`` (one scan of ``out``). Later
    ones carry their writer's process id: ``remove_stale_parts``."""
    ids = {job.id for job in jobs}
    try:
        with os.scandir(out) as entries:
            names = [entry.name for entry in entries if entry.name.startswith(".")]
    except OSError:
        return
    for name in names:
        if is_leftover(name, ids):
            (out / name).unlink(missing_ok=True)


def write_lines(path: Path, rows: list[dict]) -> None:
    """Write JSON lines atomically (``write_text_atomic``: AudioError when it cannot)."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
