"""`mlx-rag store info|list|rm|check`: see and manage what the store holds."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from rag_core.cli import output
from rag_core.cli.output import display_path, echo_json, echo_table
from rag_core.errors import RagError, StoreError
from rag_core.registry import format_bytes
from rag_core.retrieval import open_store, remove_documents, store_path

STORE_OPTION = click.option(
    "--store", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
    help="The store file (default: [store] path from the config).",
)  # fmt: skip
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
ACCESS = {
    "read-write": "read-write",
    "read-only": "read-only",
    "immutable": "read-only (its folder cannot be written: opened as immutable)",
}


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def local_time(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


@click.group("store")
def store_group() -> None:
    """See and manage what is in the store: documents, counts, size and embedding model."""


@store_group.command("info")
@STORE_OPTION
@JSON_OPTION
def info_command(store: Path | None, as_json: bool) -> None:
    """Where the store is, its size on disk, embedding model and counts."""
    with open_store(store) as db:
        info = db.info()
    if as_json:
        echo_json(info.to_dict())
        return
    model = info.embedding_model or "none (BM25 search only)"
    if info.embedding_dim:
        model += f" ({info.embedding_dim} dimensions)"
    rows = [
        ("store", info.path),
        ("access", ACCESS.get(info.access, info.access)),
        ("size", f"{format_bytes(info.size_bytes)} on disk"),
        ("documents", f"{info.documents:,}"),
        ("chunks", f"{info.chunks:,} ({info.vectors:,} with vectors)"),
        ("embedding model", model),
        ("last ingest", local_time(info.last_ingest)),
        ("schema version", info.schema_version),
    ]
    width = max(len(key) for key, _ in rows) + 1
    for key, value in rows:
        click.echo(f"{key + ':':<{width}} {value}")


@store_group.command("list")
@STORE_OPTION
@JSON_OPTION
def list_command(store: Path | None, as_json: bool) -> None:
    """The documents in the store: path, chunks, vectors and when each was ingested."""
    with open_store(store) as db:
        documents = list(db.documents().values())
    if as_json:
        echo_json({"store": str(db.path), "documents": [d.to_dict() for d in documents]})
        return
    if not documents:
        click.echo(f"The store {db.path} holds no documents: run `mlx-rag ingest PATH...`.")
        return
    echo_table(
        ["path", "chunks", "vectors", "ingested"],
        [[display_path(d.path), str(d.n_chunks), str(d.n_vectors), local_time(d.ingested_at)]
         for d in documents],
    )


@store_group.command("rm")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@STORE_OPTION
@JSON_OPTION
def rm_command(paths: tuple[Path, ...], store: Path | None, as_json: bool) -> None:
    """Remove documents (a file's, or all below a folder) with their chunks and vectors.

    Only the store changes, never the files. If a path matches no document, nothing is
    removed. A later `mlx-rag ingest` of the same files adds them again.
    """
    removed = remove_documents(paths, store=store)
    chunks = sum(d.n_chunks for d in removed)
    if as_json:
        echo_json({"store": str(store_path(store)), "chunks": chunks,
                   "removed": [d.to_dict() for d in removed]})
        return
    for document in removed:
        click.echo(f"Removed {display_path(document.path)} "
                   f"({plural(document.n_chunks, 'chunk')})")
    click.echo(f"Removed {plural(len(removed), 'document')} ({plural(chunks, 'chunk')}) from "
               f"{store_path(store)}.")


@store_group.command("check")
@STORE_OPTION
@JSON_OPTION
def check_command(store: Path | None, as_json: bool) -> None:
    """Check the store for damage: SQLite's integrity check, the full-text index, and that
    documents, chunks and vectors agree. Exits non-zero when something is wrong."""
    try:
        db = open_store(store, writable=True)  # SQLite checks the full-text index only so
    except StoreError:
        db = open_store(store)  # not writable here: check what can be checked
    with db:
        problems = db.check()
    if as_json:
        echo_json({"store": str(db.path), "ok": not problems, "problems": problems,
                   "full_text_index_checked": db.writable})
    else:
        if not db.writable:
            output.note("Note: the full-text index was not checked: the store cannot be "
                        "written here.")
        for problem in problems:
            click.echo(f"Problem: {problem}")
        if not problems:
            click.echo(f"The store {db.path} is sound.")
    if problems:
        raise RagError(f"The store {db.path} is damaged ({plural(len(problems), 'problem')}): "
                       "move it away and re-ingest, or pass --store with another path.")
