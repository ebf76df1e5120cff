"""The store and search on bad input: corrupt, foreign, missing and empty stores, bad queries."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from rag_core.chunking import TextChunk
from rag_core.errors import StoreError
from rag_core.search import query_terms, reciprocal_rank_fusion, search
from rag_core.store import Store


def chunks(*texts: str) -> list[TextChunk]:
    return [TextChunk(t, i + 1, i + 1) for i, t in enumerate(texts)]


@pytest.fixture
def db(tmp_path):
    with Store(tmp_path / "s.sqlite3", create=True) as store:
        yield store


def test_a_file_that_is_not_a_database_is_an_error_and_left_untouched(tmp_path):
    path = tmp_path / "store.sqlite3"
    garbage = b"this is not a database\n" * 100
    path.write_bytes(garbage)
    for create in (False, True):
        with pytest.raises(StoreError, match="not an SQLite database, so not an mlx-rag store"):
            Store(path, create=create)
    assert path.read_bytes() == garbage  # never recreated or overwritten


def test_damaged_pages_are_reported_as_corruption(db, tmp_path):
    with db.transaction():
        for i in range(200):
            db.put_document(f"/doc{i}", "h", "chars:1:0", chunks(f"text number {i} " * 20))
    db.close()
    data = bytearray(db.path.read_bytes())
    data[4096:len(data) - 4096] = b"\xff" * (len(data) - 8192)  # wipe all but the ends
    db.path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"), Store(db.path) as store:
        search(store, "text number", k=3)


def test_sqlite_file_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(StoreError, match="not an mlx-rag store"):
        Store(path, create=True)
    assert [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")] == ["t"]


def test_newer_schema_is_refused(db):
    with db.transaction():
        db.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(db.path)


def test_missing_and_empty_stores_say_to_ingest_first(tmp_path):
    with pytest.raises(StoreError, match="ingest"):
        Store(tmp_path / "absent.sqlite3")
    assert not (tmp_path / "absent.sqlite3").exists()  # searching never creates a store
    Store(tmp_path / "empty.sqlite3", create=True).close()
    empty = Store(tmp_path / "empty.sqlite3")
    with empty, pytest.raises(StoreError, match=r"empty: run `mlx-rag ingest"):
        search(empty, "anything")


def test_read_only_store_refuses_writes(db):
    db.close()
    with Store(db.path) as store, pytest.raises(StoreError, match="read-only"):
        store.transaction().__enter__()


def test_failed_transaction_changes_nothing(db):
    with db.transaction():
        db.put_document("/a", "h1", "chars:1:0", chunks("alpha"))
    with pytest.raises(RuntimeError), db.transaction():
        db.put_document("/a", "h2", "chars:1:0", chunks("beta", "gamma"))
        db.put_document("/b", "h3", "chars:1:0", chunks("delta"))
        raise RuntimeError("crash mid-transaction")
    assert db.counts() == {"documents": 1, "chunks": 1, "vectors": 0}
    assert db.documents()["/a"].sha256 == "h1"
    assert [i for i, _ in db.bm25('"alpha"', 5)] and not db.bm25('"beta"', 5)
    assert db.check() == []


def test_stop_word_only_queries_are_refused(db):
    with db.transaction():
        db.put_document("/a", "h", "chars:1:0", chunks("the of and"))
    for query in ("the of and", "What is it?", "  ", "?!"):
        with pytest.raises(ValueError, match=r"stop words|no words"):
            search(db, query)
    assert query_terms('What is "MLX" -- really?') == ["mlx", "really"]


def test_fts_syntax_in_queries_is_plain_text(db):
    with db.transaction():
        db.put_document("/a", "h", "chars:1:0", chunks('say "NEAR" AND OR * (x)', "other"))
    response = search(db, 'NEAR( "AND OR* x')
    assert [r.source for r in response.results] == ["/a"]


def test_dense_search_and_the_vector_cache(db):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with db.transaction():
        db.set_embedding_model("toy", 8)
        db.put_document("/a", "h", "chars:1:0", chunks("one", "two", "three"), vectors)
    ranked = db.dense(vectors[2], 2)
    assert len(ranked) == 2 and ranked[0][1] == pytest.approx(1.0)
    assert ranked[0][0] == max(db.chunks([i for i, _ in ranked]))
    first_ids, _ = db.vectors()
    with db.transaction():
        db.put_document("/b", "h", "chars:1:0", chunks("four"), vectors[:1])
    ids, matrix = db.vectors()  # the cache notices the write
    assert len(ids) == len(first_ids) + 1 and matrix.flags.c_contiguous
    with db.transaction():
        db.set_embedding_model("another", 8)  # vectors of another model are dropped
    assert db.counts()["vectors"] == 0


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_terms_in_most_chunks_are_left_out_of_bm25_without_changing_scores(db):
    from rag_core.search import informative_terms

    texts = [f"common filler {i}" for i in range(1200)] + ["common rare words"]
    with db.transaction():
        db.put_document("/many", "h", "chars:1:0", chunks(*texts))
    assert informative_terms(db, ["common", "rare"], 1201) == ["rare"]
    assert len(informative_terms(db, ["common", "filler"], 1201)) == 1  # one always stays
    full = db.bm25('"common" OR "rare"', 3)
    pruned = search(db, "common rare", k=3, mode="bm25").results
    assert pruned[0].text == "common rare words"
    assert full[0] == (pruned[0].id, pytest.approx(pruned[0].score, rel=1e-3))
