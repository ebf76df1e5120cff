"""Fixtures of the batch tests: a tiny random MusicGen checkpoint, jobs files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the Hugging Face Hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.musicgen.checkpoints import write_tiny_musicgen

    return write_tiny_musicgen(tmp_path_factory.mktemp("batch") / "tiny")


@pytest.fixture(scope="session")
def tiny_musicgen(tiny_checkpoint: Path):
    import musicgen

    return musicgen.load(tiny_checkpoint, progress=False)


def write_jobs(path: Path, jobs: list) -> Path:
    """A JSONL file: dicts as JSON objects, strings as raw lines."""
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs))
    return path


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def audio_bytes(out: Path) -> dict[str, bytes]:
    """Every audio file in ``out`` by name."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.suffix in (".wav", ".flac", ".ogg")}
