"""A store that cannot be written is searched, not called corrupt; two writers wait for each
other; each SQLite failure gets its own message.

The file-system cases run the real CLI in subprocesses: on a read-only bind mount (in a user
and mount namespace, so no privileges are needed) and in a folder made read-only with chmod
(as root, which ignores chmod, inside a user namespace where it is an ordinary user).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rag_core.store_access
from rag_core.errors import StoreError
from rag_core.retrieval import ingest_paths
from rag_core.search import search
from rag_core.store import Store
from rag_core.store_access import store_error

CLI = "import sys; sys.argv[0] = 'mlx-rag'; from rag_core.cli import main; main()"
BIND_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
N_DOCS = 120
ROUNDS = 4  # two ingests creating one store: the second failed in 1 to 3 of 4 before


def write_notes(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note{i:03d}.txt").write_text(
            f"Note {i} about the lighthouse keeper and subject{i}.\n"
        )
    return folder


def cli(*args: str | Path, wrap: list[str] = (), timeout: float = 120):
    result = subprocess.run([*wrap, sys.executable, "-c", CLI, *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if os.access(p, os.R_OK)}


@pytest.fixture
def store_folder(tmp_path, mlx_rag_config) -> Path:
    """A folder holding a BM25 store of a few notes, and a config with a retrieve pipeline."""
    docs = write_notes(tmp_path / "docs", 5)
    folder = tmp_path / "shelf"
    ingest_paths([docs], store=folder / "store.sqlite3", embed=False)
    mlx_rag_config.write_text(
        f'[store]\npath = "{folder / "store.sqlite3"}"\n\n'
        '[pipelines.find]\nsteps = [{tool = "retrieve", k = 2}]\n'
    )
    yield folder
    for path in (folder, *folder.iterdir()):  # let pytest clean up
        path.chmod(0o755 if path.is_dir() else 0o644)


def namespace_or_skip(wrap: list[str], folder: Path) -> list[str]:
    """`wrap` if, run through it, `folder` really cannot be written; else skip the test."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` (Linux) to make a folder unwritable")
    probe = subprocess.run([*wrap, "sh", "-c", f"touch '{folder}/probe' 2>/dev/null; echo ran"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "ran":  # e.g. unprivileged user namespaces are not allowed
        pytest.skip(f"cannot set up the namespace here: {probe.stderr.strip()}")
    if (folder / "probe").exists():
        (folder / "probe").unlink()
        pytest.skip("the folder stayed writable inside the namespace")
    return wrap


def check_read_only_store(folder: Path, wrap: list[str], why: str, tmp_path: Path) -> None:
    """Every reading command works and no writing one calls the store corrupt."""
    store = folder / "store.sqlite3"
    before = snapshot(folder)

    found = cli("search", "lighthouse keeper subject3", "--json", wrap=wrap)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["source"].endswith("note003.txt")
    ask = cli("ask", "subject2?", "--no-llm", "--json", wrap=wrap)
    assert ask.returncode == 0, ask.stderr
    assert json.loads(ask.stdout)["passages"][0]["source"].endswith("note002.txt")
    run = cli("run", "find", "subject4", "--json", wrap=wrap)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["retrieved"][0]["source"].endswith("note004.txt")
    info = cli("store", "info", "--json", wrap=wrap)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["access"] == "immutable"
    assert json.loads(info.stdout)["documents"] == 5
    listed = cli("store", "list", "--json", wrap=wrap)
    assert len(json.loads(listed.stdout)["documents"]) == 5

    for args in (["ingest", tmp_path / "docs"], ["store", "rm", tmp_path / "docs"]):
        refused = cli(*args, "--store", store, wrap=wrap)
        assert refused.returncode == 1
        assert f"cannot be written: {why}" in refused.stderr, refused.stderr
        assert "Searching and asking still work" in refused.stderr
        assert "corrupt" not in refused.stderr
    assert snapshot(folder) == before  # nothing written, no -wal or -shm files left


def test_search_reads_a_store_on_a_read_only_bind_mount(store_folder, tmp_path):
    wrap = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", BIND_READ_ONLY,
            str(store_folder)]
    wrap = namespace_or_skip(wrap, store_folder)
    check_read_only_store(store_folder, wrap, "it is on a read-only file system", tmp_path)


def test_search_reads_a_store_in_a_folder_the_user_cannot_write(store_folder, tmp_path):
    # As root chmod binds nobody, so the CLI runs as an ordinary user of a user namespace.
    wrap = ["unshare", "--map-user=1000", "--map-group=1000"] if os.geteuid() == 0 else []
    (store_folder / "store.sqlite3").chmod(0o444)
    store_folder.chmod(0o555)
    if wrap:
        wrap = namespace_or_skip(wrap, store_folder)
    check_read_only_store(store_folder, wrap, "you may not write the file", tmp_path)

    store_folder.chmod(0o755)  # the file may not be read at all: say so, never "corrupt"
    (store_folder / "store.sqlite3").chmod(0o000)
    denied = cli("search", "lighthouse", wrap=wrap)
    assert denied.returncode == 1
    assert "you may not read the file (permission denied)" in denied.stderr, denied.stderr
    assert "corrupt" not in denied.stderr


GATED_CLI = """
import sys, time
from pathlib import Path
ready, gate = Path(sys.argv.pop(1)), Path(sys.argv.pop(1))
from rag_core.cli import main
ready.touch()
while not gate.exists():
    time.sleep(0.0005)
sys.argv[0] = "mlx-rag"
main()
"""


def test_two_ingests_creating_one_store_at_once_both_succeed(tmp_path, mlx_rag_config):
    docs = write_notes(tmp_path / "docs", N_DOCS)
    for attempt in range(ROUNDS):
        store, gate = tmp_path / f"store{attempt}.sqlite3", tmp_path / f"go{attempt}"
        ready = [tmp_path / f"ready{attempt}-{i}" for i in range(2)]
        processes = [
            subprocess.Popen([sys.executable, "-c", GATED_CLI, str(flag), str(gate), "ingest",
                              str(docs), "--store", str(store), "--no-embed"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for flag in ready
        ]
        deadline = time.monotonic() + 60
        while not all(flag.exists() for flag in ready):  # both wait at the gate: start them
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.01)
        gate.touch()
        outputs = [p.communicate(timeout=120) for p in processes]
        for process, (stdout, stderr) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, f"attempt {attempt}: {stderr}"
            assert "Traceback" not in stderr and f"Ingested into {store}" in stdout
        with Store(store) as db:
            assert db.check() == []
            assert db.counts() == {"documents": N_DOCS, "chunks": N_DOCS, "vectors": 0}
            assert search(db, "subject7", k=1).results[0].source.endswith("note007.txt")


def test_a_writer_waits_for_another_then_reports_busy(tmp_path, monkeypatch):
    monkeypatch.setattr(rag_core.store_access, "BUSY_TIMEOUT_S", 0.2)
    Store(tmp_path / "s.sqlite3", create=True).close()
    with Store(tmp_path / "s.sqlite3", writable=True) as first, first.transaction(), \
            Store(first.path, writable=True) as second:
        start = time.monotonic()
        with pytest.raises(StoreError, match="is busy: another process") as caught:
            second.transaction().__enter__()
        assert time.monotonic() - start >= 0.2  # it waited before giving up
        assert "corrupt" not in str(caught.value)
        with Store(first.path) as reader:  # readers never wait for a writer
            assert reader.counts()["documents"] == 0


def sqlite_failure(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize("code, message, expected", [
    (5, "database is locked", "is busy"),
    (8, "attempt to write a readonly database", "cannot be written"),
    (14, "unable to open database file", "Cannot open the store"),
    (26, "file is not a database", "is not an SQLite database"),
    (11, "database disk image is malformed", "is corrupt (database disk image is malformed)"),
    (13, "database or disk is full", "is full"),
    (10, "disk I/O error", "I/O error"),
    (1, "no such table: chunks", "SQLite cannot use the store"),
])  # fmt: skip
def test_each_sqlite_failure_has_its_own_message(code, message, expected, tmp_path):
    path = tmp_path / "s.sqlite3"
    assert expected in str(store_error(sqlite_failure(code, message), path))
    plain = sqlite3.OperationalError(message)  # as before Python 3.11: no code, the text tells
    assert expected in str(store_error(plain, path))
    assert ("corrupt" in str(store_error(plain, path))) == (code == 11)  # only damage is
