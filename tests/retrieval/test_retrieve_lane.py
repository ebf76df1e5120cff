"""Retrieval takes turns on the lane of the model that embeds the query: the store's model."""

from __future__ import annotations

import threading

import pytest
from rag_core import PipelineState, get_config, get_registry, get_tool, model_lane
from rag_core.retrieval import ingest_paths, retrieve

from tests.retrieval.models import write_tiny_bert
from tests.retrieval.test_ingest import write_docs


def _run_tool(question: str):
    return get_tool("retrieve").run(PipelineState(question=question, config=get_config()))


@pytest.mark.parametrize("run", [retrieve, _run_tool], ids=["function", "tool"])
def test_retrieve_holds_the_store_models_lane(run, configure, tiny_bert, tmp_path, monkeypatch):
    """While the query is embedded, nobody else computes with the store's embedding model (a
    server's /v1/embeddings or another search), even when the config names another one."""
    store = tmp_path / "store.sqlite3"
    configure(store=store, embedding=tiny_bert)
    write_docs(tmp_path / "docs", n=2)
    ingest_paths([tmp_path / "docs"])
    configure(store=store, embedding=write_tiny_bert(tmp_path / "other-bert"))

    embedder = get_registry().get(str(tiny_bert), kind="embedding")
    encode, others = embedder.encode, []

    def encode_while_another_thread_asks_for_the_lane(texts, *args, **kwargs):
        taken = threading.Event()

        def take_the_lane():
            with model_lane(str(tiny_bert)):
                taken.set()

        other = threading.Thread(target=take_the_lane, daemon=True)
        other.start()
        others.append((other, taken, taken.wait(0.5)))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode", encode_while_another_thread_asks_for_the_lane)
    run("topic0")
    assert others and not any(got_it for _, _, got_it in others)  # it waited: the lane was held
    for other, taken, _ in others:
        assert taken.wait(10)  # and got it once the search was done
        other.join(10)
