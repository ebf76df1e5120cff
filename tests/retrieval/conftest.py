"""Retrieval test fixtures: small local models (built once per session) and config helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.retrieval.models import minilm_dir, write_tiny_bert, write_tiny_llm

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the Hugging Face Hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_dir()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def citing_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llm(tmp_path_factory.mktemp("citing-llm"), cite=True)


@pytest.fixture
def configure(mlx_rag_config: Path):
    """configure(store=..., embedding=..., llm=...) writes the test's config file."""
    import rag_core.plugins

    def write(**sections: str | Path) -> Path:
        lines = []
        for section, value in sections.items():
            key = "path" if section == "store" else "model"
            lines += [f"[{section}]", f"{key} = {json.dumps(str(value))}"]
        mlx_rag_config.write_text("\n".join(lines) + "\n")
        rag_core.plugins.reset()
        return mlx_rag_config

    return write
