"""The document store: one SQLite file with documents, chunks, an FTS5 index and dense vectors.

Every write happens inside `store.transaction()`, so a crash or Ctrl-C mid-ingest leaves the
file as it was after the last committed transaction. A file that is not a valid store raises
StoreError; it is never recreated or overwritten. Commands that only read open the store
read-only (see `rag_core.store_access`), so a store on a read-only medium can be searched.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rag_core.chunking import TextChunk
from rag_core.errors import StoreError
from rag_core.store_access import (
    connect_read_only,
    connect_writable,
    corrupt,
    store_error,
    store_files,
)

SCHEMA_VERSION = "1"
MMAP_BYTES = 1 << 30

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        chunker TEXT NOT NULL,
        n_chunks INTEGER NOT NULL,
        ingested_at REAL NOT NULL
    )""",
    """CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        doc_id INTEGER NOT NULL REFERENCES documents(id),
        ord INTEGER NOT NULL,
        text TEXT NOT NULL,
        line_start INTEGER NOT NULL,
        line_end INTEGER NOT NULL
    )""",
    "CREATE INDEX chunks_doc ON chunks(doc_id)",
    # One row per document: its chunk ids (int64) and their vectors (float32, row-major), so
    # loading every vector for dense search reads few, large blobs.
    """CREATE TABLE vectors (
        doc_id INTEGER PRIMARY KEY REFERENCES documents(id),
        n INTEGER NOT NULL,
        chunk_ids BLOB NOT NULL,
        matrix BLOB NOT NULL
    )""",
    """CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'), ('generation', '0')",
)


@dataclass(frozen=True)
class Document:
    id: int
    path: str
    sha256: str
    chunker: str
    n_chunks: int
    ingested_at: float = 0.0  # seconds since the epoch
    n_vectors: int = 0

    def to_dict(self) -> dict:
        return {"path": self.path, "chunks": self.n_chunks, "vectors": self.n_vectors,
                "ingested_at": iso_time(self.ingested_at), "sha256": self.sha256,
                "chunker": self.chunker}


@dataclass(frozen=True)
class Chunk:
    id: int
    text: str
    source: str
    line_start: int
    line_end: int


@dataclass(frozen=True)
class StoreInfo:
    """What `mlx-rag store info` shows."""

    path: str
    access: str  # "read-write", "read-only" or "immutable" (a folder nobody may write)
    size_bytes: int  # the file and its write-ahead log files
    schema_version: str
    embedding_model: str | None
    embedding_dim: int | None
    documents: int
    chunks: int
    vectors: int
    last_ingest: float | None  # seconds since the epoch

    def to_dict(self) -> dict:
        return {**asdict(self), "last_ingest": iso_time(self.last_ingest)}


def iso_time(seconds: float | None) -> str | None:
    """ISO 8601 in UTC, to the second."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


class Store:
    """An open store. `Store(path)` opens an existing store read-only; `writable=True` opens an
    existing one for writing, and `create=True` also initialises a new (missing or empty) file
    (safely when two processes create it at once). `access` says how it was opened."""

    def __init__(self, path: str | Path, *, create: bool = False, writable: bool = False):
        self.path = Path(path).expanduser()
        self.writable = create or writable
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"Store path {self.path} is not a file: pass --store FILE.")
        if not self.path.exists() and not create:
            raise StoreError(
                f"No store at {self.path}: run `mlx-rag ingest PATH...` first "
                "(or pass --store to point at an existing one)."
            )
        if self.writable:
            self.db = connect_writable(self.path, SCHEMA if create else None)
            self.access = "read-write"
        else:
            self.db, self.access = connect_read_only(self.path)
        try:
            with self._errors():
                self._check()
                if self.writable:
                    self.db.execute("PRAGMA synchronous=NORMAL")
                # Reading the vectors through a memory map is ~10x faster than through the pager.
                self.db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        except BaseException:
            self.db.close()
            raise
        self._cache: dict = {}

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        if not tables and self.path.stat().st_size == 0:
            raise StoreError(
                f"No store at {self.path} (the file is empty): run `mlx-rag ingest PATH...` "
                "first (or pass --store to point at an existing one)."
            )
        row = self._meta("schema_version") if "meta" in tables else None
        if row is None:
            raise StoreError(
                f"{self.path} is an SQLite file but not an mlx-rag store; it was left untouched. "
                "Pass --store with another path."
            )
        if row != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {row}; this mlx-rag reads version "
                f"{SCHEMA_VERSION}. Re-ingest into a new store (--store NEW_FILE)."
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite errors into StoreErrors that say what is wrong and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, self.path) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (also on Ctrl-C or a crash)."""
        if not self.writable:
            raise StoreError(f"The store {self.path} was opened read-only.")
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._bump_generation()
            except BaseException:
                if self.db.in_transaction:  # SQLite rolls back by itself after some errors
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _bump_generation(self) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    @property
    def embedding_model(self) -> str | None:
        """The model whose vectors the store holds (None before the first embedded ingest)."""
        with self._errors():
            return self._meta("embedding_model")

    def set_embedding_model(self, name: str, dim: int) -> None:
        """Record the embedding model; switching models drops the old vectors (in a transaction)."""
        if self._meta("embedding_model") not in (None, name):
            self.db.execute("DELETE FROM vectors")
        self._set_meta("embedding_model", name)
        self._set_meta("embedding_dim", str(dim))

    # -- documents --------------------------------------------------------------------------

    def documents(self) -> dict[str, Document]:
        """Every document by path, in path order."""
        with self._errors():
            rows = self.db.execute(
                "SELECT d.id, d.path, d.sha256, d.chunker, d.n_chunks, d.ingested_at, "
                "coalesce(v.n, 0) FROM documents d LEFT JOIN vectors v ON v.doc_id = d.id "
                "ORDER BY d.path"
            ).fetchall()
        return {row[1]: Document(*row) for row in rows}

    def find_documents(
        self, name: str | Path, documents: dict[str, Document] | None = None
    ) -> list[Document]:
        """The documents stored for `name`: a file's, or those of every file below a folder.

        `name` matches as given or resolved (ingest stores resolved paths). `documents` is
        what `documents()` returned, to match several names against one read of the store.
        """
        keys = {os.path.normpath(name), str(Path(name).expanduser().resolve())}
        folders = tuple(os.path.join(key, "") for key in keys)
        documents = self.documents() if documents is None else documents
        return [d for path, d in documents.items() if path in keys or path.startswith(folders)]

    def put_document(
        self,
        path: str,
        sha256: str,
        chunker: str,
        chunks: list[TextChunk],
        vectors: np.ndarray | None = None,
    ) -> int:
        """Insert or replace a document and its chunks (call inside `transaction()`)."""
        self.delete_document(path)
        cur = self.db.execute(
            "INSERT INTO documents(path, sha256, chunker, n_chunks, ingested_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (path, sha256, chunker, len(chunks), time.time()),
        )
        doc_id = cur.lastrowid
        ids = []
        for ord_, chunk in enumerate(chunks):
            cur = self.db.execute(
                "INSERT INTO chunks(doc_id, ord, text, line_start, line_end) VALUES (?,?,?,?,?)",
                (doc_id, ord_, chunk.text, chunk.line_start, chunk.line_end),
            )
            ids.append(cur.lastrowid)
        if vectors is not None and len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if vectors.shape[0] != len(ids):
                raise ValueError(f"{len(ids)} chunks but {vectors.shape[0]} vectors")
            self.db.execute(
                "INSERT INTO vectors(doc_id, n, chunk_ids, matrix) VALUES (?, ?, ?, ?)",
                (doc_id, len(ids), np.array(ids, dtype=np.int64).tobytes(), vectors.tobytes()),
            )
        return doc_id

    def delete_document(self, path: str) -> bool:
        """Remove a document, its chunks and vectors (call inside `transaction()`)."""
        row = self.db.execute("SELECT id FROM documents WHERE path=?", (path,)).fetchone()
        if row is None:
            return False
        self.db.execute("DELETE FROM vectors WHERE doc_id=?", row)
        self.db.execute("DELETE FROM chunks WHERE doc_id=?", row)
        self.db.execute("DELETE FROM documents WHERE id=?", row)
        return True

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Numbers of documents, chunks and vectors (cached until the store changes)."""
        with self._errors():
            return self._cached("counts", lambda: {
                "documents": self.db.execute("SELECT count(*) FROM documents").fetchone()[0],
                "chunks": self.db.execute("SELECT count(*) FROM chunks").fetchone()[0],
                "vectors": int(self.db.execute("SELECT total(n) FROM vectors").fetchone()[0]),
            })  # fmt: skip

    def info(self) -> StoreInfo:
        """Where the store is, how it is opened, its size on disk, model and counts."""
        with self._errors():
            dim = self._meta("embedding_dim")
            last = self.db.execute("SELECT max(ingested_at) FROM documents").fetchone()[0]
            return StoreInfo(
                path=str(self.path), access=self.access,
                size_bytes=sum(p.stat().st_size for p in store_files(self.path)),
                schema_version=self._meta("schema_version") or "",
                embedding_model=self._meta("embedding_model"),
                embedding_dim=int(dim) if dim else None, **self.counts(), last_ingest=last,
            )  # fmt: skip

    def _cached(self, key: str, compute):
        """`compute()`, remembered until another transaction (from any process) commits."""
        generation = self._meta("generation")
        if self._cache.get("generation") != generation:
            self._cache = {"generation": generation}
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        """Chunks by id, with their document's path."""
        out: dict[int, Chunk] = {}
        with self._errors():
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self.db.execute(
                    "SELECT c.id, c.text, d.path, c.line_start, c.line_end FROM chunks c "
                    f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                    part,
                ).fetchall()
                out.update((row[0], Chunk(*row)) for row in rows)
        return out

    def bm25(self, match: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, score) for an FTS5 MATCH expression, best first; higher is better."""
        with self._errors():
            rows = self.db.execute(
                "SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
                (match, limit),
            ).fetchall()
        return [(rowid, -rank) for rowid, rank in rows]

    def match_count(self, match: str, cap: int) -> int:
        """How many chunks match an FTS5 expression, counting no further than `cap`."""
        with self._errors():
            return self.db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
                (match, cap),
            ).fetchone()[0]

    def dense(self, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the nearest vectors, best first."""
        ids, matrix = self.vectors()
        if not len(ids):
            return []
        scores = matrix @ np.asarray(query, dtype=np.float32)
        limit = min(limit, len(ids))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All chunk ids and their vectors as one contiguous float32 matrix (cached until the
        store changes)."""
        with self._errors():
            return self._cached("vectors", self._load_vectors)

    def _load_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        dim = int(self._meta("embedding_dim") or 0)
        rows = self.db.execute("SELECT n, chunk_ids, matrix FROM vectors").fetchall()
        total = sum(n for n, _, _ in rows)
        ids = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.int64)
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        if len(ids) != total or matrix.size != total * dim:
            raise corrupt(self.path, ValueError("stored vectors do not match their chunk counts"))
        return ids, matrix.reshape(total, dim)

    def check(self) -> list[str]:
        """Consistency problems found (empty when the store is sound). The full-text index is
        checked only when the store was opened for writing."""
        problems = []
        with self._errors():
            result = self.db.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                problems.append(f"integrity_check: {result}")
            try:  # SQLite runs this check only on connections that may write
                if self.writable:
                    self.db.execute(
                        "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)"
                    )
            except sqlite3.DatabaseError as exc:
                problems.append(f"full-text index: {exc}")
            queries = {
                "chunks without a document": "SELECT count(*) FROM chunks WHERE doc_id NOT IN "
                "(SELECT id FROM documents)",
                "vector sets without a document": "SELECT count(*) FROM vectors WHERE doc_id "
                "NOT IN (SELECT id FROM documents)",
                "vector sets whose size is wrong": "SELECT count(*) FROM vectors v JOIN documents "
                "d ON d.id = v.doc_id WHERE v.n != d.n_chunks",
                "documents whose chunk count is wrong": "SELECT count(*) FROM documents d WHERE "
                "n_chunks != (SELECT count(*) FROM chunks WHERE doc_id = d.id)",
            }
            for problem, sql in queries.items():
                n = self.db.execute(sql).fetchone()[0]
                if n:
                    problems.append(f"{n} {problem}")
        return problems
