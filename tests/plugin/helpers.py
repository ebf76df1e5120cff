"""Helpers shared by the plugin tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf


def toml(value) -> str:
    """A TOML literal for a str, number, bool or path."""
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def files_in(folder: Path) -> list[str]:
    """Every file name under ``folder``, hidden ones included (to catch leftover temp files)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(samples as float32 (frames, channels), sample rate) of an audio file."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, rate
