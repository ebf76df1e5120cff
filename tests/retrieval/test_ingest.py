"""Incremental ingest: content-hash skips, replaced changes, --prune, no duplicate chunks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import rag_core.plugins
from rag_core.errors import RagError
from rag_core.retrieval import ingest_paths, retrieve
from rag_core.store import Store

from tests.core.fakes import FakePlugins
from tests.retrieval.test_store_access import CLI


def write_docs(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        file = folder / f"doc{i}.md"
        body = f"Paragraph about topic{i} and shared words.\n" * 30
        file.write_text(f"# Document {i}\n\n{body}")
        files.append(file)
    return files


def store_rows(store: Path) -> dict:
    with Store(store) as db:
        counts = db.counts()
        rows = db.db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        docs = db.documents()
    return {"counts": counts, "ids": [r[0] for r in rows], "texts": [r[1] for r in rows],
            "docs": docs}


@pytest.fixture
def store(configure, tiny_bert, tmp_path) -> Path:
    path = tmp_path / "store.sqlite3"
    configure(store=path, embedding=tiny_bert)
    return path


def test_rerun_skips_unchanged_files_and_never_duplicates(store, tmp_path):
    files = write_docs(tmp_path / "docs")
    first = ingest_paths([tmp_path / "docs"])
    assert sorted(first.added) == sorted(str(f.resolve()) for f in files)
    before = store_rows(store)
    assert before["counts"]["chunks"] == before["counts"]["vectors"] == first.chunks > 3

    again = ingest_paths([tmp_path / "docs", files[0]])  # a file named twice counts once
    assert again.added == again.updated == [] and len(again.unchanged) == 3
    assert again.chunks == 0
    after = store_rows(store)
    assert after["counts"] == before["counts"]
    assert after["ids"] == before["ids"]  # untouched, not deleted and re-inserted
    assert after["texts"] == before["texts"]


def test_changed_file_replaces_its_chunks(store, tmp_path):
    files = write_docs(tmp_path / "docs")
    ingest_paths([tmp_path / "docs"])
    files[1].write_text("# Rewritten\n\nNow it speaks only of zeppelins.\n")
    report = ingest_paths([tmp_path / "docs"])
    assert report.updated == [str(files[1].resolve())] and len(report.unchanged) == 2
    rows = store_rows(store)
    doc = rows["docs"][str(files[1].resolve())]
    assert doc.n_chunks == 1
    assert not any("topic1" in t for t in rows["texts"])  # the old chunks are gone
    assert rows["counts"]["chunks"] == rows["counts"]["vectors"]
    assert [Path(r.source).name for r in retrieve("zeppelins", mode="bm25").results] == ["doc1.md"]


def test_prune_removes_documents_whose_files_are_gone(store, tmp_path):
    files = write_docs(tmp_path / "docs")
    ingest_paths([tmp_path / "docs"])
    files[2].unlink()
    kept = ingest_paths([tmp_path / "docs"])  # without --prune the document stays
    assert kept.pruned == [] and str(files[2].resolve()) in store_rows(store)["docs"]
    pruned = ingest_paths([tmp_path / "docs"], prune=True)
    assert pruned.pruned == [str(files[2].resolve())]
    rows = store_rows(store)
    assert set(rows["docs"]) == {str(f.resolve()) for f in files[:2]}
    assert not any("topic2" in t for t in rows["texts"])
    with Store(store, create=True) as db:
        assert db.check() == []
    assert ingest_paths([], prune=True).pruned == []  # prune alone needs no path


def test_prune_others_keeps_only_the_files_given(store, tmp_path):
    """Documents of files that exist but were not given go too (a store that mirrors one
    folder); a user's plain ingest of another folder keeps them."""
    first, second = write_docs(tmp_path / "a", n=2), write_docs(tmp_path / "b", n=2)
    ingest_paths([tmp_path / "a", tmp_path / "b"])
    kept = ingest_paths([tmp_path / "a"], prune=True)  # b's files exist: prune keeps them
    assert kept.pruned == [] and len(store_rows(store)["docs"]) == 4
    report = ingest_paths([tmp_path / "a"], prune_others=True)
    assert sorted(report.pruned) == sorted(str(f.resolve()) for f in second)
    assert set(store_rows(store)["docs"]) == {str(f.resolve()) for f in first}
    assert "2 pruned" in report.summary()
    with Store(store, create=True) as db:
        assert db.check() == []


def test_switching_embedding_model_reembeds(store, configure, tiny_bert, minilm, tmp_path):
    write_docs(tmp_path / "docs", n=1)
    bm25_only = ingest_paths([tmp_path / "docs"], embed=False)
    assert bm25_only.embedding_model is None
    assert store_rows(store)["counts"]["vectors"] == 0
    assert retrieve("topic0").mode == "bm25"

    embedded = ingest_paths([tmp_path / "docs"])  # character chunks are re-chunked in tokens
    assert len(embedded.updated) == 1
    rows = store_rows(store)
    assert rows["counts"]["vectors"] == rows["counts"]["chunks"] > 0
    assert retrieve("topic0").mode == "hybrid"
    # Offline (no embedding model) re-runs keep the embedded documents as they are.
    assert len(ingest_paths([tmp_path / "docs"], embed=False).unchanged) == 1
    assert store_rows(store)["counts"]["vectors"] == rows["counts"]["vectors"]


def test_folders_skip_hidden_and_unknown_files(store, tmp_path):
    docs = tmp_path / "docs"
    write_docs(docs, n=1)
    (docs / ".hidden.md").write_text("secret")
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.txt").write_text("git internals")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (docs / "sub").mkdir()
    (docs / "sub" / "page.html").write_text("<p>nested page</p>")
    report = ingest_paths([docs])
    assert sorted(Path(p).name for p in report.added) == ["doc0.md", "page.html"]
    assert report.skipped == []


def test_binary_and_undecodable_files_are_skipped_by_name(store, tmp_path):
    (tmp_path / "good.txt").write_text("readable text")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    report = ingest_paths([tmp_path / "good.txt", tmp_path / "binary.txt", tmp_path / "latin1.txt"])
    assert [Path(p).name for p in report.added] == ["good.txt"]
    reasons = {Path(p).name: why for p, why in report.skipped}
    assert "binary" in reasons["binary.txt"] and "UTF-8" in reasons["latin1.txt"]


def test_nonexistent_paths_fail_before_anything_is_written(store, tmp_path):
    (tmp_path / "real.txt").write_text("text")
    with pytest.raises(RagError, match=r"missing\.txt"):
        ingest_paths([tmp_path / "real.txt", tmp_path / "missing.txt"])
    assert not store.exists()
    with pytest.raises(RagError, match="Nothing to ingest"):
        ingest_paths([])


def test_plugin_loaders_handle_their_suffixes(configure, tmp_path, monkeypatch):
    """A plugin's register_loaders hook adds a format (here: a toy '.rev' format)."""
    plugins = FakePlugins(tmp_path / "site", monkeypatch)
    (tmp_path / "site").mkdir()
    plugins.add("reverser", """
        from rag_core import hookimpl

        def load(path):
            data = path.read_text()
            if data.startswith("BAD"):
                raise ValueError("not a valid .rev file")
            return data[::-1]

        @hookimpl
        def register_loaders(register):
            register((".rev",), load)
    """)
    configure(store=tmp_path / "store.sqlite3")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.rev").write_text("sdrawkcab nettirw")
    (docs / "b.rev").write_text("BAD file")
    try:
        report = ingest_paths([docs], embed=False)
    finally:
        plugins.cleanup()
        rag_core.plugins.reset()
    assert [Path(p).name for p in report.added] == ["a.rev"]
    assert report.skipped == [(str((docs / "b.rev").resolve()), "not a valid .rev file")]
    assert store_rows(tmp_path / "store.sqlite3")["texts"] == ["written backwards"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifos_are_skipped_with_a_warning_not_read(store, tmp_path):
    """Reading a FIFO blocks until something writes to it: ingest must never try."""
    docs = tmp_path / "docs"
    write_docs(docs, n=1)
    os.mkfifo(docs / "inbox.md")  # found by walking the folder
    os.mkfifo(tmp_path / "named.txt")  # named explicitly
    process = subprocess.run(
        [sys.executable, "-c", CLI, "ingest", str(docs), str(tmp_path / "named.txt"), "--no-embed"],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert "1 added" in process.stdout and "2 skipped" in process.stdout
    for name in ("inbox.md", "named.txt"):
        assert f"Warning: skipped {tmp_path}" in process.stderr
        assert f"{name}: not a regular file (a FIFO)" in process.stderr
    assert [Path(p).name for p in store_rows(store)["docs"]] == ["doc0.md"]
