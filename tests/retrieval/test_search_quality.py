"""Dense and hybrid search find paraphrases that BM25 alone misses (real all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rag_core.plugins
from rag_core.retrieval import ingest_paths, retrieve

from tests.retrieval.conftest import CORPUS

QUERIES = json.loads((Path(__file__).parent / "labelled_queries.json").read_text())


@pytest.fixture(scope="module")
def embedded_corpus(minilm, tmp_path_factory) -> Path:
    """The corpus ingested once (embedding is the slow part) through the configured path."""
    store = tmp_path_factory.mktemp("quality") / "store.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        config = store.parent / "config.toml"
        config.write_text(f'[store]\npath = "{store}"\n[embedding]\nmodel = "{minilm}"\n')
        patch.setenv("MLX_RAG_CONFIG", str(config))
        rag_core.plugins.reset()
        report = ingest_paths([CORPUS])
        rag_core.plugins.reset()
    assert len(report.added) == len(list(CORPUS.iterdir()))
    assert report.embedding_model == str(minilm.resolve())
    return store


@pytest.fixture
def corpus_store(embedded_corpus, configure, minilm) -> Path:
    configure(store=embedded_corpus, embedding=minilm)
    return embedded_corpus


def recall_at(k: int, mode: str) -> tuple[float, list[str]]:
    misses = []
    for query, relevant in QUERIES.items():
        response = retrieve(query, k=k, mode=mode)
        assert response.mode == mode
        if relevant not in [Path(r.source).name for r in response.results]:
            misses.append(query)
    return 1 - len(misses) / len(QUERIES), misses


def test_hybrid_finds_paraphrases_bm25_misses(corpus_store):
    bm25, bm25_misses = recall_at(3, "bm25")
    dense, _ = recall_at(3, "dense")
    hybrid, hybrid_misses = recall_at(3, "hybrid")
    print(f"\nrecall@3 over {len(QUERIES)} labelled paraphrase queries: "
          f"bm25 {bm25:.2f}, dense {dense:.2f}, hybrid {hybrid:.2f}")
    print(f"missed by bm25: {bm25_misses}\nmissed by hybrid: {hybrid_misses}")
    assert hybrid > bm25
    assert hybrid >= 0.75
    assert set(hybrid_misses) < set(bm25_misses) or not hybrid_misses


def test_auto_mode_is_hybrid_with_cited_locations(corpus_store):
    response = retrieve("photos in a dark room come out blurry", k=3)
    assert response.mode == "hybrid" and not response.notes
    top = response.results[0]
    assert Path(top.source).name == "tripod.html"
    assert top.lines == (2, 3)  # the HTML source lines of the heading and the paragraph
    assert top.text.startswith("Low light") and "tripod" in top.text and "<p>" not in top.text
