"""Opening a store file, and saying what is wrong when SQLite cannot use it.

Writers check first that the file and its folder can be written, and create a new store under
SQLite's write lock, so that two processes creating it at once do not collide.

Readers open the file read-only (URI `mode=ro`). The store is in WAL mode, and a WAL reader needs
the `-shm` index file next to the store, which SQLite creates; on a read-only medium or in a
folder the user cannot write it cannot, so the file is opened `immutable=1` instead: SQLite then
takes no locks and assumes the file does not change while it is open (true on a read-only
medium; in a folder that only another user may write, a reader opened during their ingest may
see a half-written state until it reopens). SQLite failures become StoreErrors by result code:
busy, read-only, permission denied, not a database, I/O error, disk full; only SQLITE_CORRUPT
is called corrupt.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from rag_core.errors import StoreError

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another one (e.g. a second ingest)

# SQLite's primary result codes (the low byte of extended ones).
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN = 10, 11, 13, 14
SQLITE_AUTH, SQLITE_NOTADB = 23, 26
# Before Python 3.11 exceptions carry no code: recognise SQLite's messages for them.
MESSAGE_CODES = {
    "database is locked": SQLITE_BUSY,
    "database table is locked": SQLITE_LOCKED,
    "readonly database": SQLITE_READONLY,
    "unable to open database": SQLITE_CANTOPEN,
    "not a database": SQLITE_NOTADB,
    "malformed": SQLITE_CORRUPT,
    "disk i/o error": SQLITE_IOERR,
    "disk is full": SQLITE_FULL,
    "access permission denied": SQLITE_PERM,
}


def wal_file(path: Path) -> Path:
    """The store's write-ahead log."""
    return path.with_name(path.name + "-wal")


def store_files(path: Path) -> list[Path]:
    """The store file and the write-ahead log and index files SQLite keeps next to it."""
    return [p for p in (path, wal_file(path), path.with_name(path.name + "-shm")) if p.exists()]


def connect(path: Path, query: str = "") -> sqlite3.Connection:
    """A connection in autocommit mode that waits BUSY_TIMEOUT_S for other writers.

    `query` ("mode=ro", ...) opens the file through a URI with those parameters.
    """
    target = f"{path.resolve().as_uri()}?{query}" if query else str(path)
    return sqlite3.connect(target, uri=bool(query), isolation_level=None, timeout=BUSY_TIMEOUT_S)


def connect_read_only(path: Path) -> tuple[sqlite3.Connection, str]:
    """A read-only connection to an existing file and how it was opened: "read-only", or
    "immutable" where SQLite cannot create the files its write-ahead log needs.

    Raises the StoreError `store_error` gives when the file cannot be read at all.
    """
    try:
        return _opened(path, "mode=ro"), "read-only"
    except sqlite3.DatabaseError as exc:
        if error_code(exc) not in (SQLITE_CANTOPEN, SQLITE_READONLY) or not write_problem(path):
            raise store_error(exc, path) from exc
        log = wal_file(path)
        if log.exists() and log.stat().st_size > 0:
            raise StoreError(
                f"The store {path} has changes in its write-ahead log {log.name} that SQLite "
                f"cannot read here ({write_problem(path)}): it needs to create the log's index "
                f"file next to it. Copy {path.name} and {log.name} together to a folder you can "
                "write and pass --store with the copy."
            ) from exc
    try:
        return _opened(path, "mode=ro&immutable=1"), "immutable"
    except sqlite3.DatabaseError as exc:
        raise store_error(exc, path) from exc


def _opened(path: Path, query: str) -> sqlite3.Connection:
    """A connection through which SQLite has opened the file (it opens files lazily)."""
    db = connect(path, query)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def connect_writable(path: Path, schema: Sequence[str] | None = None) -> sqlite3.Connection:
    """A connection that may write `path`; with a `schema`, a missing file or one without
    tables becomes a database in WAL mode holding it.

    Two processes creating the same new store at once are safe: the first to take the write
    lock creates the tables; the other waits for it (BUSY_TIMEOUT_S), then finds them.
    """
    problem = write_problem(path)
    if problem:
        raise StoreError(f"The store {path} cannot be written: {problem}. "
                         + (READ_ONLY_HINT if path.exists() else ""))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(path)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"Cannot open the store {path}: {exc}.") from exc
    has_tables = "SELECT count(*) FROM sqlite_master"
    try:
        # A file without tables is new, or another process is creating it (then its tables
        # appear once this one holds the write lock).
        if schema is not None and not db.execute(has_tables).fetchone()[0]:
            _use_wal(db)
            db.execute("BEGIN IMMEDIATE")
            if not db.execute(has_tables).fetchone()[0]:
                for statement in schema:
                    db.execute(statement)
            db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise store_error(exc, path) from exc
        raise
    return db


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL mode. SQLite answers "busy" at once, without waiting, while another
    connection creates the same file, so wait here (up to BUSY_TIMEOUT_S)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if error_code(exc) not in (SQLITE_BUSY, SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def error_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for `exc` (None when it is not known)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    message = str(exc).lower()
    return next((c for text, c in MESSAGE_CODES.items() if text in message), None)


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """A StoreError that says what went wrong with the store at `path` and what to do."""
    code = error_code(exc)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreError(
            f"The store {path} is busy: another process (an ingest?) kept it locked for more "
            f"than {BUSY_TIMEOUT_S:g} s. Wait for it to finish and retry."
        )
    if code == SQLITE_READONLY:
        why = write_problem(path) or f"SQLite says it is read-only ({exc})"
        return StoreError(f"The store {path} cannot be written: {why}. {READ_ONLY_HINT}")
    if code in (SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH):
        why = read_problem(path) or write_problem(path) or str(exc)
        return StoreError(f"Cannot open the store {path}: {why}.")
    if code == SQLITE_NOTADB:
        return StoreError(
            f"{path} is not an SQLite database, so not an mlx-rag store; it was left untouched. "
            "Pass --store with another path (or move the file away)."
        )
    if code == SQLITE_CORRUPT:
        return corrupt(path, exc)
    if code == SQLITE_FULL:
        return StoreError(
            f"The disk holding the store {path} is full ({exc}): free some space and retry. The "
            "store keeps what was committed before."
        )
    if code == SQLITE_IOERR:
        return StoreError(
            f"Reading or writing the store {path} failed with an I/O error ({exc}): check the "
            "disk (or network file system) and retry."
        )
    return StoreError(
        f"SQLite cannot use the store {path}: {exc}. It was left untouched; "
        f"`mlx-rag store check --store {path}` says whether it is damaged."
    )


def corrupt(path: Path, exc: Exception) -> StoreError:
    """The error for a store whose content is damaged."""
    return StoreError(
        f"The store {path} is corrupt ({exc}). It was left untouched: `mlx-rag store check "
        f"--store {path}` lists the damage; move it away and re-ingest, or pass --store with "
        "another path."
    )


READ_ONLY_HINT = (
    "Searching and asking still work (they only read it); to change it, copy it to a folder "
    "you can write and pass --store with the copy."
)


def write_problem(path: Path) -> str | None:
    """Why the store file `path` (existing or not) cannot be written, or None if it can.

    SQLite writes the file and, for its write-ahead log, files next to it, so both the file
    and its folder must be writable.
    """
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if _read_only_file_system(folder):
        return f"it is on a read-only file system ({folder})"
    if path.exists() and not os.access(path, os.W_OK):
        return "you may not write the file (permission denied)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"you may not write its folder {folder} (permission denied), where SQLite "
                "keeps its write-ahead log")
    return None


def read_problem(path: Path) -> str | None:
    """Why the store file `path` cannot be read, or None if it can."""
    if not path.exists():
        return "the file does not exist (any more)"
    if not os.access(path.parent, os.X_OK) or not os.access(path, os.R_OK):
        return "you may not read the file (permission denied)"
    return None


def _read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows) or the path vanished
        return False
