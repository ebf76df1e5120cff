"""Helpers shared by the plugin tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

MLX_RAG = Path(sys.executable).with_name("mlx-rag")


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


def subprocess_env(home: Path) -> dict:
    """The environment of an `mlx-rag` process run by a test: its own home, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLX_RAG_")}
    env.update(MLX_RAG_HOME=str(home), MLX_RAG_CONFIG=str(home / "config.toml"),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def start(home: Path, *args) -> subprocess.Popen:
    """`mlx-rag ARGS` as a process of its own (stdout and stderr piped, text)."""
    return subprocess.Popen([MLX_RAG, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env(home))


def wait_for_line(process: subprocess.Popen, prefix: str) -> list[str]:
    """stderr lines up to the first starting with ``prefix`` (the rest stays unread)."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting with {prefix!r}: {''.join(lines)}")


def wait_for_file(folder: Path, pattern: str, min_bytes: int = 1, timeout: float = 60) -> Path:
    """The first file in ``folder`` matching ``pattern`` with at least ``min_bytes``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob(pattern):
            try:
                if path.stat().st_size >= min_bytes:
                    return path
            except FileNotFoundError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"no {pattern} in {folder} after {timeout} s: {files_in(folder)}")
