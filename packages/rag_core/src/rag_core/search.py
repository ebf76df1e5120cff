"""Search a store: BM25 (FTS5), dense (cosine over the stored vectors), and hybrid, which
fuses the two rankings with reciprocal rank fusion."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from rag_core.errors import StoreError
from rag_core.store import Store

MODES = ("auto", "hybrid", "bm25", "dense")
MAX_K = 10_000  # results per search; far beyond what a reader or a prompt can use
RRF_K = 60  # the usual constant: dampens the weight of the very first ranks
WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()  # noqa: SIM905 - a word list reads better as text
)


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str] | str) -> np.ndarray: ...


@dataclass
class SearchResult:
    id: int
    text: str
    source: str
    lines: tuple[int, int]
    score: float

    def to_dict(self) -> dict:
        record = asdict(self)
        record["lines"] = list(self.lines)
        return record


@dataclass
class SearchResponse:
    query: str
    mode: str  # the mode actually used: "hybrid", "bm25" or "dense"
    results: list[SearchResult]
    notes: list[str] = field(default_factory=list)  # e.g. why dense search was not used

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "mode": self.mode,
            "notes": self.notes,
            "results": [r.to_dict() for r in self.results],
        }


def query_terms(query: str) -> list[str]:
    """The query's searchable words (lower-case, without stop words, in order, unique).

    ValueError when nothing is left, so a query like "what is the" fails with a clear message.
    """
    words = [w.lower() for w in WORD.findall(query)]
    if not words:
        raise ValueError(f"The query {query!r} has no words to search for.")
    terms = list(dict.fromkeys(w for w in words if w not in STOP_WORDS))
    if not terms:
        raise ValueError(
            f"The query {query!r} has only stop words ({', '.join(words)}); "
            "add a word that says what you are looking for."
        )
    return terms


def fts_query(terms: list[str]) -> str:
    """An FTS5 MATCH expression that ranks chunks containing any of the terms."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def informative_terms(store: Store, terms: list[str], n_chunks: int) -> list[str]:
    """Drop terms found in more than half of the chunks (keeping at least the rarest one).

    BM25 gives such terms no weight (their IDF is <= 0; FTS5 floors it at 1e-6), so leaving them
    out changes no score, but spares ranking every chunk that contains them.
    """
    if len(terms) < 2 or n_chunks < 1000:
        return terms
    half = n_chunks // 2
    counts = {t: store.match_count(fts_query([t]), half + 1) for t in terms}
    kept = [t for t in terms if counts[t] <= half]
    return kept or [min(terms, key=counts.__getitem__)]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse rankings of ids: score(id) = sum over rankings of 1 / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def search(
    store: Store,
    query: str,
    k: int = 5,
    embedder: Embedder | None = None,
    mode: str = "auto",
    candidates: int | None = None,
) -> SearchResponse:
    """The `k` best chunks for `query`.

    mode "auto" is hybrid when `embedder` is given and the store holds its vectors, else BM25
    (with a note saying why). Each ranking contributes `candidates` ids to the fusion.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown search mode '{mode}' (choose from {', '.join(MODES)}).")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k}.")
    terms = query_terms(query)
    counts = store.counts()
    if not counts["chunks"]:
        raise StoreError(
            f"The store {store.path} is empty: run `mlx-rag ingest PATH...` first."
        )
    notes: list[str] = []
    dense_ok = mode != "bm25" and _can_search_dense(store, embedder, counts, notes)
    if mode == "dense" and not dense_ok:
        raise StoreError("Dense search is not possible: " + " ".join(notes))
    if mode == "hybrid" and not dense_ok:
        raise StoreError("Hybrid search is not possible: " + " ".join(notes))
    used = ("hybrid" if dense_ok else "bm25") if mode == "auto" else mode
    pool = max(candidates or 0, 5 * k, 50)

    if used != "dense":
        terms = informative_terms(store, terms, counts["chunks"])
    if used == "bm25":
        ranked = store.bm25(fts_query(terms), k)
    elif used == "dense":
        ranked = store.dense(embedder.encode(query), k)
    else:
        lexical = [i for i, _ in store.bm25(fts_query(terms), pool)]
        semantic = [i for i, _ in store.dense(embedder.encode(query), pool)]
        ranked = reciprocal_rank_fusion([lexical, semantic])[:k]
    chunks = store.chunks([i for i, _ in ranked])
    results = [
        SearchResult(i, c.text, c.source, (c.line_start, c.line_end), round(score, 6))
        for i, score in ranked
        if (c := chunks.get(i)) is not None
    ]
    return SearchResponse(query, used, results, notes)


def _can_search_dense(
    store: Store, embedder: Embedder | None, counts: dict, notes: list[str]
) -> bool:
    stored = store.embedding_model
    if not counts["vectors"]:
        notes.append("the store holds no vectors (it was ingested without an embedding model).")
        return False
    if embedder is None:
        notes.append(f"the embedding model '{stored}' is not loaded to embed the query.")
        return False
    if stored != embedder.name:
        notes.append(
            f"the store's vectors come from '{stored}', not '{embedder.name}'; "
            "re-run `mlx-rag ingest` to re-embed with the configured model."
        )
        return False
    if counts["vectors"] < counts["chunks"]:
        notes.append(
            f"{counts['chunks'] - counts['vectors']} of {counts['chunks']} chunks have no vector "
            "yet (re-run `mlx-rag ingest` with the embedding model available)."
        )
    return True
