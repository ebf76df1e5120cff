"""Ingest files into a store: discover, load, chunk, embed and write, incrementally.

A file whose content hash and chunking settings match what the store holds is skipped; a
changed file replaces its old chunks; `prune` removes documents whose files are gone. Writes
are batched into transactions, so an interrupted ingest leaves only whole documents behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rag_core.chunking import Chunker, TextChunk
from rag_core.errors import RagError
from rag_core.loaders import Loaders, read_bytes
from rag_core.store import Store

if TYPE_CHECKING:
    from rag_core.embeddings import SentenceEmbedder

CHUNK_TOKENS, CHUNK_TOKENS_OVERLAP = 160, 32  # in the embedding model's tokens
CHUNK_CHARS, CHUNK_CHARS_OVERLAP = 800, 160  # without a model
BATCH_CHUNKS = 128  # chunks embedded (several batches at once on the CPU) and committed together


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks: int = 0  # chunks written
    embedding_model: str | None = None
    store: str = ""

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
        ]
        if self.pruned:
            parts.append(f"{len(self.pruned)} pruned")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        vectors = f"embedded with {self.embedding_model}" if self.embedding_model else "no vectors"
        return f"{', '.join(parts)}; {self.chunks} chunks written ({vectors})."


def make_chunker(
    embedder: SentenceEmbedder | None = None, size: int | None = None, overlap: int | None = None
) -> Chunker:
    """Chunks sized in `embedder`'s tokens (fitting its input length), else in characters."""
    if embedder is None:
        size = size or CHUNK_CHARS
        overlap = CHUNK_CHARS_OVERLAP if overlap is None else overlap
        return Chunker(size, min(overlap, size - 1))
    size = min(size or CHUNK_TOKENS, embedder.max_tokens - 2)  # room for [CLS] and [SEP]
    overlap = CHUNK_TOKENS_OVERLAP if overlap is None else overlap
    return Chunker(size, min(overlap, size - 1), embedder.token_spans, f"tokens:{embedder.name}")


def discover(paths: Iterable[str | Path], loaders: Loaders) -> list[Path]:
    """The files to ingest: named files as given, folders walked for known suffixes.

    Hidden files and folders are left out; files that are not regular (FIFOs, sockets) are
    kept, for ingest to skip with a warning. RagError names any path that does not exist.
    """
    paths = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise RagError(f"No such file or folder: {', '.join(missing)}.")
    files: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
                # Not only regular files: a FIFO or socket gets a warning, not silence.
                if not hidden and file.exists() and not file.is_dir() and loaders.handles(file):
                    files[file.resolve()] = None
        else:
            files[path.resolve()] = None
    return list(files)


def ingest(
    store: Store,
    paths: Iterable[str | Path],
    *,
    embedder: SentenceEmbedder | None = None,
    loaders: Loaders | None = None,
    chunker: Chunker | None = None,
    prune: bool = False,
    prune_others: bool = False,
    on_file: Callable[[str, str], None] | None = None,
    progress: bool = False,
) -> IngestReport:
    """Ingest files and folders into `store` (see the module docstring).

    `prune` removes the documents whose files are gone, `prune_others` every document that is
    not one of these files (the store then holds exactly them). `on_file(path, outcome)` is
    called once per file after its outcome is final ("added", "updated", "unchanged" or
    "skipped: reason"). `progress` shows a bar on a terminal.
    """
    loaders = loaders or Loaders()
    files = discover(paths, loaders)
    return ingest_files(
        store, files, embedder=embedder, loaders=loaders, chunker=chunker, prune=prune,
        prune_others=prune_others, on_file=on_file, progress=progress,
    )


def ingest_files(
    store: Store,
    files: list[Path],
    *,
    embedder: SentenceEmbedder | None = None,
    loaders: Loaders | None = None,
    chunker: Chunker | None = None,
    prune: bool = False,
    prune_others: bool = False,
    on_file: Callable[[str, str], None] | None = None,
    progress: bool = False,
) -> IngestReport:
    """`ingest` for an already discovered list of files."""
    from tqdm import tqdm

    loaders = loaders or Loaders()
    chunker = chunker or make_chunker(embedder)
    report = IngestReport(embedding_model=embedder.name if embedder else None)
    report.store = str(store.path)
    known = store.documents()
    if embedder is not None and store.embedding_model != embedder.name:
        with store.transaction():
            store.set_embedding_model(embedder.name, embedder.dim)
    pending: list[tuple[str, str, list[TextChunk], str]] = []  # path, sha256, chunks, outcome
    # disable=None: a bar on terminals only.
    bar = tqdm(total=len(files), unit="file", disable=None if progress else True, leave=False)

    def done(path: str, outcome: str) -> None:
        bar.update()
        if on_file is not None:
            on_file(path, outcome)

    def skip(path: str, reason: str) -> None:
        report.skipped.append((path, reason))
        done(path, f"skipped: {reason}")

    def flush() -> None:
        texts = [c.text for _, _, chunks, _ in pending for c in chunks]
        vectors = embedder.encode(texts) if embedder is not None and texts else None
        offset = 0
        with store.transaction():
            for path, digest, chunks, _ in pending:
                part = None if vectors is None else vectors[offset : offset + len(chunks)]
                offset += len(chunks)
                store.put_document(path, digest, chunker.signature, chunks, part)
        for path, _, chunks, outcome in pending:
            getattr(report, outcome).append(path)
            report.chunks += len(chunks)
            done(path, outcome)
        pending.clear()

    with bar:
        for file in files:
            path = str(file)
            try:
                data = read_bytes(file)
            except OSError as exc:
                skip(path, exc.strerror or str(exc))
                continue
            except ValueError as exc:  # not a regular file: reading a FIFO would never end
                skip(path, str(exc))
                continue
            digest = hashlib.sha256(data).hexdigest()
            old = known.get(path)
            if old and old.sha256 == digest and _current(old.chunker, chunker, embedder):
                report.unchanged.append(path)
                done(path, "unchanged")
                continue
            try:
                text = loaders.load(file)
            except (ValueError, OSError) as exc:
                skip(path, str(exc))
                continue
            chunks = chunker.split(text)
            pending.append((path, digest, chunks, "added" if old is None else "updated"))
            if sum(len(c) for _, _, c, _ in pending) >= BATCH_CHUNKS:
                flush()
        if pending:
            flush()
    if prune or prune_others:
        listed = {str(file) for file in files}
        gone = [p for p in store.documents()
                if (prune and not Path(p).exists()) or (prune_others and p not in listed)]
        with store.transaction():
            for path in gone:
                store.delete_document(path)
        report.pruned.extend(gone)
    return report


def _current(stored: str, chunker: Chunker, embedder: SentenceEmbedder | None) -> bool:
    """Is a document chunked with settings `stored` still up to date?

    Without an embedding model (offline, say) documents that were chunked for one are kept
    as they are rather than downgraded to character chunks without vectors.
    """
    return stored == chunker.signature or (embedder is None and stored.startswith("tokens:"))

