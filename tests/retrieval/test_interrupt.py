"""An ingest killed midway (SIGKILL or Ctrl-C) leaves a consistent store; a re-run completes it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rag_core.retrieval import ingest_paths
from rag_core.store import Store

N_FILES = 300
# Run the real CLI, slowed down inside each transaction so the signal lands mid-write.
SLOW_CLI = """
import sys, time
import rag_core.store as store
put = store.Store.put_document
def slow_put(*args, **kwargs):
    time.sleep(0.004)
    return put(*args, **kwargs)
store.Store.put_document = slow_put
from rag_core.cli import main
sys.argv[0] = "mlx-rag"
main()
"""


def committed_documents(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet, or the schema is not committed yet


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(N_FILES):
        (folder / f"note{i:03d}.txt").write_text(f"Note {i}: a short text about subject{i}.\n")
    return folder


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_interrupted_ingest_leaves_a_consistent_store(sig, docs, configure, tiny_bert, tmp_path):
    store = tmp_path / "store.sqlite3"
    configure(store=store, embedding=tiny_bert)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "ingest", str(docs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while committed_documents(store) == 0 and process.poll() is None:
        assert time.monotonic() < deadline, "the ingest never committed anything"
        time.sleep(0.005)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 128 + sig and "Traceback" not in stderr
        how = "Interrupted" if sig == signal.SIGINT else "Interrupted by SIGTERM"
        assert f"{how}: files finished before the stop: " in stderr
        assert "Run the same command again to ingest the rest" in stderr

    with Store(store, create=True) as db:  # opening recovers the write-ahead log
        assert db.check() == []
        counts = db.counts()
        documents = db.documents()
    print(f"\n{sig.name}: {counts['documents']} of {N_FILES} documents were committed")
    assert 0 < counts["documents"] < N_FILES, "the signal did not land midway"
    if sig != signal.SIGKILL:  # what the message said finished is what the store holds
        assert f"files finished before the stop: {counts['documents']} added;" in stderr
    assert counts["chunks"] == counts["vectors"] == sum(d.n_chunks for d in documents.values())

    report = ingest_paths([docs])
    assert len(report.unchanged) == counts["documents"]
    assert len(report.added) == N_FILES - counts["documents"]
    with Store(store, create=True) as db:
        assert db.check() == []
        assert db.counts() == {"documents": N_FILES, "chunks": N_FILES, "vectors": N_FILES}
