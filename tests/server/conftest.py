"""Server test fixtures: a small ingested library with tiny local models, and app clients."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import rag_core.plugins

DOCS = {
    "harbour.md": "# Harbour\n\nThe harbour is foggy at night.\nShips sound horns in the fog.\n",
    "bread.md": "# Bread\n\nBread needs flour, water, salt and yeast.\nKnead the dough well.\n",
    "garden.txt": "Tomatoes in the garden need sun and water every day.\n",
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the Hugging Face Hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.retrieval.models import write_tiny_bert

    path = write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    # torch and transformers leave a heap that makes every gc.collect() (the registry runs one
    # when a test's models are unloaded) take ~0.5 s; later collections can skip it.
    gc.collect()
    gc.freeze()
    return path


@pytest.fixture(scope="session")
def citing_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mlx-lm model whose greedy answer is always "[1][1]..." (see write_tiny_llm)."""
    from tests.retrieval.models import write_tiny_llm

    return write_tiny_llm(tmp_path_factory.mktemp("citing-llm"), cite=True)


@dataclass
class Library:
    store: Path
    docs: Path
    llm: Path
    embedding: Path
    config: Path


def write_config(path: Path, store: Path, embedding: Path, llm: Path, extra: str = "") -> None:
    path.write_text(f"[store]\npath = {json.dumps(str(store))}\n"
                    f"[embedding]\nmodel = {json.dumps(str(embedding))}\n"
                    f"[llm]\nmodel = {json.dumps(str(llm))}\n"
                    f"[tools.answer]\nmax_tokens = 4\n{extra}")  # pipelines answer briefly
    rag_core.plugins.reset()


@pytest.fixture
def library(mlx_rag_config: Path, tiny_bert: Path, citing_llm: Path, tmp_path: Path) -> Library:
    """Three small documents ingested (with the tiny BERT) into a store the config points at,
    and the citing tiny LLM as [llm] model."""
    from rag_core.retrieval import ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    store = tmp_path / "store.sqlite3"
    write_config(mlx_rag_config, store, tiny_bert, citing_llm)
    ingest_paths([docs])
    return Library(store, docs, citing_llm, tiny_bert, mlx_rag_config)


@pytest.fixture
def make_client():
    """make_client(**create_app options) -> a TestClient for the app, closed after the test."""
    from rag_core.server.app import create_app
    from starlette.testclient import TestClient

    clients = []

    def make(raise_server_exceptions: bool = True, **options):
        client = TestClient(create_app(**options), base_url="http://127.0.0.1",
                            raise_server_exceptions=raise_server_exceptions)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def assert_error(response, status: int, param: str | None = None, words: str = "") -> dict:
    """The response is a JSON error with this status, naming ``param``; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    assert words.lower() in error["message"].lower(), error
    assert "Traceback" not in response.text
    return error


# ---- music (the musicgen plugin's endpoints) ----

SMOKE = "musicgen-smoke"


@pytest.fixture
def music_home(mlx_rag_home: Path, mlx_rag_config: Path) -> Path:
    """The smoke checkpoint as the music tool's model; returns the track library folder."""
    mlx_rag_config.write_text(f'[tools.music]\nmodel = "{SMOKE}"\n')
    rag_core.plugins.reset()
    return mlx_rag_home / "music"


@pytest.fixture
def music_library(library):
    """The server tests' library (store, tiny BERT, citing LLM answering in 4 tokens) with
    the smoke checkpoint as the music model."""
    write_config(library.config, library.store, library.embedding, library.llm,
                 extra=f'[tools.music]\nmodel = "{SMOKE}"\n')
    return library
