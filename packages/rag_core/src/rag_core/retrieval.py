"""Ingest, retrieve and answer with the configured store and models.

The one code path behind `mlx-rag ingest/search/ask/store`, the `retrieve` and `answer` tools
and the Python API. Models come from the shared registry: `[embedding] model` (kind "embedding")
and `[llm] model` (kind "llm"); the store is `[store] path`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

from rag_core.answer import LanguageModel
from rag_core.config import Config, get_config
from rag_core.errors import ModelNotFoundError, ModelUnavailableError, RagError, StoreError
from rag_core.ingest import IngestReport, discover, ingest_files
from rag_core.loaders import Loaders
from rag_core.plugins import get_registry, model_lane
from rag_core.search import SearchResponse, search
from rag_core.store import Document, Store

Note = Callable[[str], None]


def store_path(path: str | Path | None = None, config: Config | None = None) -> Path:
    """`path` if given, else `[store] path` from the config."""
    return Path(path).expanduser() if path else (config or get_config()).store_path


def open_store(
    store: str | Path | None = None, config: Config | None = None, *, writable: bool = False
) -> Store:
    """The existing store (`store`, else `[store] path`), opened read-only: what search, ask,
    pipelines and servers use; it also works on a read-only medium. `writable=True` opens it
    for writing. StoreError says what is wrong (missing, busy, unreadable, not a store, ...)."""
    return Store(store_path(store, config), writable=writable)


def remove_documents(
    names: Iterable[str | Path], *, store: str | Path | None = None, config: Config | None = None
) -> list[Document]:
    """Remove the documents stored for each name (a file, or the files below a folder), with
    their chunks, index entries and vectors, in one transaction. If a name matches no
    document, StoreError names it (with near matches) and nothing is removed."""
    names = list(names)
    if not names:
        raise RagError("Nothing to remove: give one or more document paths "
                       "(`mlx-rag store list` shows them).")
    with open_store(store, config, writable=True) as db, db.transaction():
        stored = db.documents()
        removed: dict[str, Document] = {}
        for name in names:
            found = db.find_documents(name, stored)
            if not found:
                raise StoreError(_unknown_document(name, list(stored), db.path))
            removed.update((d.path, d) for d in found)
        for path in removed:
            db.delete_document(path)
    return list(removed.values())


def _unknown_document(name: str | Path, stored: list[str], path: Path) -> str:
    by_name = {Path(p).name: p for p in stored}
    close = difflib.get_close_matches(Path(name).name, list(by_name), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(by_name[c] for c in close)}?" if close else ""
    return (f"The store {path} holds no document {str(name)!r} (nor any below it).{hint} "
            "`mlx-rag store list` shows what it holds.")


def try_embedder(model_id: str, note: Note | None = None, *, unknown_ok: bool = False):
    """The embedding model, or None (after a note saying why) when its files cannot be had
    (or, with `unknown_ok`, when no plugin knows it any more)."""
    unavailable = (ModelUnavailableError, ModelNotFoundError)[: 2 if unknown_ok else 1]
    try:
        return get_registry().get(model_id, kind="embedding")
    except unavailable as exc:
        if note:
            note(f"Embedding model '{model_id}' is not available, so only BM25 search is "
                 f"possible: {exc}")
        return None


def ingest_paths(
    paths: Iterable[str | Path],
    *,
    store: str | Path | None = None,
    config: Config | None = None,
    prune: bool = False,
    prune_others: bool = False,
    embed: bool = True,
    on_file: Callable[[str, str], None] | None = None,
    note: Note | None = None,
    progress: bool = False,
) -> IngestReport:
    """Ingest files and folders into the store, embedding with `[embedding] model` if it can
    be loaded (`embed=False`: BM25 only). `prune` removes the documents whose files are gone,
    `prune_others` every document not among these files."""
    config = config or get_config()
    paths = list(paths)
    if not paths and not (prune or prune_others):
        raise RagError("Nothing to ingest: give one or more files or folders.")
    loaders = Loaders.from_plugins()
    files = discover(paths, loaders)
    with Store(store_path(store, config), create=True) as db:
        embedder = try_embedder(config.get("embedding.model"), note) if embed and files else None
        return ingest_files(
            db, files, embedder=embedder, loaders=loaders, prune=prune, prune_others=prune_others,
            on_file=on_file, progress=progress,
        )


def retrieve(
    question: str,
    *,
    k: int = 4,
    mode: str = "auto",
    store: str | Path | None = None,
    config: Config | None = None,
    note: Note | None = None,
) -> SearchResponse:
    """Search the store: hybrid when its vectors' embedding model can be loaded, else BM25.

    Queries are embedded with the model that embedded the store, which may differ from
    `[embedding] model` until the next ingest (a note says so), holding that model's lane.
    """
    config = config or get_config()
    unavailable: list[str] = []  # why the embedding model could not be loaded
    with open_store(store, config) as db:
        embedder = None
        stored_model = db.embedding_model if mode != "bm25" else None
        if stored_model:
            configured = config.get("embedding.model")
            if note and stored_model != configured:
                from rag_core.plugins import get_registry

                if get_registry().spec(configured).id != stored_model:
                    note(f"The store was embedded with '{stored_model}', not the configured "
                         f"'{configured}': re-run `mlx-rag ingest` to switch.")
            embedder = try_embedder(stored_model, unavailable.append, unknown_ok=True)
        # the query is embedded in the embedding model's lane, shared with its other users
        lane = model_lane(stored_model, missing_ok=True) if embedder is not None else nullcontext()
        with lane:
            response = search(db, question, k=k, embedder=embedder, mode=mode)
    if note:
        if response.mode == "bm25" and unavailable:
            note(unavailable[0])
        else:
            for line in response.notes:
                note(f"Using BM25 only: {line}" if response.mode == "bm25" else line)
    return response


def get_llm(model_id: str | None = None, config: Config | None = None) -> LanguageModel:
    """The answering model: `model_id`, else `[llm] model`."""
    return get_registry().get(model_id or (config or get_config()).get("llm.model"), kind="llm")
