"""`mlx-rag store info|list|rm|check`: what the store holds, and removing documents from it."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.retrieval.test_cli import run
from tests.retrieval.test_ingest import write_docs


@pytest.fixture
def store(configure, tiny_bert, tmp_path) -> Path:
    """A store holding docs/doc0..2.md and docs/sub/doc0..1.md, embedded with tiny_bert."""
    path = tmp_path / "store.sqlite3"
    configure(store=path, embedding=tiny_bert)
    write_docs(tmp_path / "docs")
    write_docs(tmp_path / "docs" / "sub", n=2)
    run("ingest", tmp_path / "docs")
    return path


def table_counts(store: Path) -> dict[str, int]:
    """Rows in each table, read with SQLite directly (the FTS index through its own tables)."""
    db = sqlite3.connect(store)
    try:
        tables = ["documents", "chunks", "vectors", "chunks_fts_docsize"]
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        counts["matched"] = db.execute(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'topic2'"
        ).fetchone()[0]
        return counts
    finally:
        db.close()


def test_info_shows_counts_size_and_model(store, tiny_bert):
    before = time.time()
    info = json.loads(run("store", "info", "--json").stdout)
    chunks = table_counts(store)["chunks"]
    assert info["path"] == str(store) and info["access"] == "read-only"
    assert (info["documents"], info["chunks"], info["vectors"]) == (5, chunks, chunks)
    assert info["embedding_model"] == str(tiny_bert) and info["embedding_dim"] == 32
    assert info["size_bytes"] >= store.stat().st_size > 0
    assert info["schema_version"] == "1"
    assert info["last_ingest"][:10] == time.strftime("%Y-%m-%d", time.gmtime(before))

    text = run("store", "info").stdout
    assert f"store:           {store}" in text and "documents:       5" in text
    assert f"embedding model: {tiny_bert} (32 dimensions)" in text
    assert " KiB on disk" in text


def test_list_shows_each_document(store, tmp_path):
    listed = json.loads(run("store", "list", "--json").stdout)
    paths = [d["path"] for d in listed["documents"]]
    docs = (tmp_path / "docs").resolve()
    assert paths == [str(docs / f"doc{i}.md") for i in range(3)] + [
        str(docs / "sub" / f"doc{i}.md") for i in range(2)]
    first = listed["documents"][0]
    assert set(first) == {"path", "chunks", "vectors", "ingested_at", "sha256", "chunker"}
    assert first["chunks"] == first["vectors"] > 0 and first["chunker"].startswith("tokens:")
    assert sum(d["chunks"] for d in listed["documents"]) == table_counts(store)["chunks"]

    lines = run("store", "list").stdout.splitlines()
    assert lines[0].split() == ["PATH", "CHUNKS", "VECTORS", "INGESTED"]
    assert len(lines) == 6 and lines[1].split()[0].endswith("doc0.md")


def test_rm_removes_a_document_with_its_chunks_index_rows_and_vectors(store, tmp_path):
    before = table_counts(store)
    doc2 = json.loads(run("store", "list", "--json").stdout)["documents"][2]
    assert doc2["path"].endswith("docs/doc2.md") and before["matched"] > 0
    result = run("store", "rm", tmp_path / "docs" / "doc2.md")
    assert "Removed 1 document" in result.stdout
    after = table_counts(store)
    assert after["documents"] == before["documents"] - 1
    for table in ("chunks", "vectors", "chunks_fts_docsize"):
        removed = doc2["chunks"] if table != "vectors" else 1
        assert after[table] == before[table] - removed, table
    assert after["matched"] == 0  # "topic2" only occurs in doc2.md
    assert "doc2.md" not in run("search", "topic2", "-k", "10").stdout
    assert run("store", "check").stdout.endswith("is sound.\n")

    readded = run("ingest", tmp_path / "docs")  # the file itself is untouched
    assert "1 added, 0 updated, 4 unchanged" in readded.stdout


def test_rm_of_a_folder_removes_the_documents_below_it(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    removed = json.loads(run("store", "rm", "docs/sub/", "--json").stdout)
    assert sorted(Path(d["path"]).name for d in removed["removed"]) == ["doc0.md", "doc1.md"]
    assert removed["chunks"] == sum(d["chunks"] for d in removed["removed"])
    remaining = json.loads(run("store", "list", "--json").stdout)["documents"]
    assert [Path(d["path"]).parent.name for d in remaining] == ["docs"] * 3


def test_rm_of_an_unknown_document_removes_nothing(store, tmp_path):
    before = table_counts(store)
    result = run("store", "rm", tmp_path / "docs" / "doc0.md", tmp_path / "docs" / "doc9.md",
                 ok=False)
    assert "holds no document" in result.stderr and "doc9.md" in result.stderr
    assert "Did you mean" in result.stderr and "doc0.md" in result.stderr
    assert table_counts(store) == before  # doc0.md, which exists, was not removed either
    assert run("store", "rm", ok=False).exit_code == 2  # no path: usage error


def test_missing_and_damaged_stores(configure, tmp_path):
    missing = tmp_path / "absent.sqlite3"
    configure(store=missing)
    for args in (["info"], ["list"], ["rm", "x.md"], ["check"]):
        result = run("store", *args, ok=False)
        assert f"No store at {missing}" in result.stderr and "mlx-rag ingest" in result.stderr
    assert not missing.exists()

    damaged = tmp_path / "damaged.sqlite3"
    write_docs(tmp_path / "docs")
    run("ingest", tmp_path / "docs", "--store", damaged, "--no-embed")
    db = sqlite3.connect(damaged)
    db.execute("UPDATE documents SET n_chunks = n_chunks + 1")  # counts no longer agree
    db.commit()
    db.close()
    result = run("store", "check", "--store", damaged, ok=False)
    assert "Problem: 3 documents whose chunk count is wrong" in result.stdout
    assert "is damaged (1 problem)" in result.stderr
