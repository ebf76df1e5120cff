"""Fixtures for the musicgen plugin tests: offline hub, tiny local checkpoints, CLI helpers."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def empty_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, empty_hf_home: Path) -> Path:
    """No test reaches the Hugging Face Hub: HF_HUB_OFFLINE=1 and an empty HF_HOME."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(empty_hf_home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty_hf_home / "hub"))
    return empty_hf_home


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MusicGen (800 Hz, 50 frames/s) in the hub layout, written by transformers."""
    from tests.musicgen.checkpoints import write_tiny_musicgen

    return write_tiny_musicgen(tmp_path_factory.mktemp("musicgen") / "tiny")


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mlx-lm model whose greedy output is always "[1][1]..." (see write_tiny_llm)."""
    from tests.retrieval.models import write_tiny_llm

    return write_tiny_llm(tmp_path_factory.mktemp("tiny-llm"), cite=True)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty folder for the test's audio files."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def cli():
    """cli(*args, input=None) -> click Result of `mlx-rag ARGS` run in this process."""
    from click.testing import CliRunner
    from rag_core.cli import cli as root

    runner = CliRunner(catch_exceptions=False)

    def invoke(*args: str, **kwargs):
        return runner.invoke(root, [str(a) for a in args], **kwargs)

    return invoke


@pytest.fixture
def configure(mlx_rag_config: Path):
    """configure(toml_text) writes the test's config file and makes rag_core read it again."""
    import rag_core.plugins

    def write(text: str) -> Path:
        mlx_rag_config.write_text(text)
        rag_core.plugins.reset()
        return mlx_rag_config

    return write


@pytest.fixture
def corpus_store(tmp_path: Path) -> Path:
    """The demo corpus ingested (BM25 only) into a store of its own."""
    from musicgen.plugin.demo import corpus_dir
    from rag_core.retrieval import ingest_paths

    store = tmp_path / "store.sqlite3"
    ingest_paths([corpus_dir()], store=store, embed=False)
    return store
