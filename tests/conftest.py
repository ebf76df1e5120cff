"""Shared fixtures: every test gets its own mlx-rag home and config file, and fresh state."""

from __future__ import annotations

import os
from pathlib import Path

# The parity tests check float32 arithmetic: on CUDA (and Apple's M5) MLX runs float32 products
# in TF32 unless this is 0, read once per process, so before anything imports MLX.
os.environ.setdefault("MLX_ENABLE_TF32", "0")

import pytest
import rag_core.plugins


@pytest.fixture(autouse=True)
def mlx_rag_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MLX_RAG_HOME -> a temp dir; MLX_RAG_CONFIG -> an empty config.toml inside it.

    The plugin toggles and debug switches are cleared, and rag_core's process-wide config and
    plugin host are reset before and after the test. A test that writes the config after using
    rag_core calls ``rag_core.plugins.reset()`` so the next use reads it again.
    """
    home = tmp_path / "mlx-rag-home"
    home.mkdir()
    config = home / "config.toml"
    config.write_text("")
    monkeypatch.setenv("MLX_RAG_HOME", str(home))
    monkeypatch.setenv("MLX_RAG_CONFIG", str(config))
    for name in ("MLX_RAG_LOAD_PLUGINS", "MLX_RAG_STRICT_PLUGINS", "MLX_RAG_DEBUG",
                 "MLX_RAG_QUIET"):
        monkeypatch.delenv(name, raising=False)
    rag_core.plugins.reset()
    yield home
    rag_core.plugins.reset()


@pytest.fixture
def mlx_rag_config(mlx_rag_home: Path) -> Path:
    """The config file MLX_RAG_CONFIG points at (empty until the test writes it)."""
    return mlx_rag_home / "config.toml"
