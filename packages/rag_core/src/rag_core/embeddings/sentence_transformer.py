"""Load a sentence-transformers repo (or a bare BERT checkpoint) as an MLX SentenceEmbedder."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from rag_core.blas import blas_threads, usable_cores
from rag_core.embeddings.bert import BertModel
from rag_core.embeddings.config import BertConfig
from rag_core.embeddings.pooling import Pooling
from rag_core.errors import ModelUnavailableError

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*/config.json", "vocab.txt"]
MAX_CPU_WORKERS = 8
BATCH, CPU_BATCH = 32, 16  # texts a batch (see SentenceEmbedder.encode)


class CpuThread:
    """A daemon thread with a CPU stream of its own that runs what it is given, in order.

    MLX's streams belong to the thread that made them, and every thread that makes one gets a
    worker thread in MLX that does not end with it: threads made per call would pile up (400
    calls, 800 threads). These live as long as the process; as daemons they never hold its exit
    up, and MLX's thread-local state of a thread that never ends is never torn down at exit."""

    def __init__(self, name: str):
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, function: Callable, *args: Any) -> Future:
        done: Future = Future()
        self._work.put((done, function, args))
        return done

    def _run(self) -> None:
        with mx.stream(mx.new_stream(mx.cpu)):
            while True:
                done, function, args = self._work.get()
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(function(*args))
                    except BaseException as exc:
                        done.set_exception(exc)


_cpu_threads: list[CpuThread] = []
_cpu_threads_lock = threading.Lock()


def cpu_thread(index: int) -> CpuThread:
    """The ``index``-th CpuThread of the process (made on first use)."""
    with _cpu_threads_lock:
        while len(_cpu_threads) <= index:
            _cpu_threads.append(CpuThread(f"embed-{len(_cpu_threads)}"))
        return _cpu_threads[index]


def cpu_workers() -> int:
    """Batches embedded at once: the usable cores (at most MAX_CPU_WORKERS) on the CPU device,
    one elsewhere (a GPU runs a batch's kernels in parallel itself)."""
    if mx.default_device() != mx.cpu:
        return 1
    return max(1, min(MAX_CPU_WORKERS, usable_cores() or 1))


class SentenceEmbedder:
    """Text -> unit-length (when the repo says Normalize) float32 vectors.

    `tokenizer` is a `tokenizers.Tokenizer` without truncation, used by chunking to size
    chunks in this model's tokens; `max_tokens` is the longest input the model embeds.
    """

    def __init__(self, model: BertModel, tokenizer, pooling: Pooling, max_tokens: int, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_tokens = max_tokens
        self.name = name
        self.dim = model.config.hidden_size
        self._truncating = type(tokenizer).from_str(tokenizer.to_str())
        self._truncating.no_padding()
        self._truncating.enable_truncation(max_tokens)
        self.pad_id = model.config.pad_token_id

    def tokenize(self, texts: list[str]) -> tuple[mx.array, mx.array]:
        """Input ids and attention mask (B, L), right-padded to the longest text."""
        return self._padded(self._truncating.encode_batch(texts))

    def _padded(self, encodings: list) -> tuple[mx.array, mx.array]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(encodings), width), dtype=np.int32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return mx.array(ids), mx.array(mask)

    def encode(self, texts: list[str] | str, batch_size: int | None = None) -> np.ndarray:
        """Embed texts: (N, dim) float32 (a single string gives (dim,)), ``batch_size`` at a
        time (default: 16 on the CPU, faster there than 8, 12, 24 or 32 in
        docs/performance.md's runs; 32 elsewhere).

        On the CPU, several batches run at once, each on a thread and a CPU stream of its own
        with the BLAS on one thread: MLX runs a stream's elementwise kernels on one core, and
        they are about half of an embedding (2 cores, docs/' 623 chunks: 15.0 s against 19.9 s
        with one stream and a 2-thread BLAS, `bench_store.py --model-only`). The vectors agree
        to float32 rounding (a BLAS on one thread may sum in another order)."""
        if isinstance(texts, str):
            return self.encode([texts], batch_size)[0]
        if batch_size is None:
            batch_size = CPU_BATCH if mx.default_device() == mx.cpu else BATCH
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of texts of about the same number of tokens waste little on padding (docs/'
        # chunks: 1% padding, against 15% in batches sorted by characters).
        encodings = self._truncating.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        workers = min(len(batches), cpu_workers())
        if workers <= 1:
            for rows in batches:
                out[rows] = self._embed([encodings[i] for i in rows])
            return out

        def work(worker: int) -> None:
            for rows in batches[worker::workers]:
                out[rows] = self._embed([encodings[i] for i in rows])

        with blas_threads(1):
            for done in [cpu_thread(worker).submit(work, worker) for worker in range(workers)]:
                done.result()
        return out

    def _embed(self, encodings: list) -> np.ndarray:
        ids, mask = self._padded(encodings)
        return np.array(self.pooling(self.model(ids, mask), mask).astype(mx.float32))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each of `text`'s tokens, without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).offsets


def load(source: str | Path, dtype: str = "float32") -> SentenceEmbedder:
    """Load a sentence-transformers model from a local directory or a hub repo id."""
    from tokenizers import Tokenizer

    from rag_core.hub import resolve_model_path

    root = resolve_model_path(source, allow_patterns=ALLOW_PATTERNS)
    path = root / _transformer_dir(root)
    for required in ("config.json", "tokenizer.json"):
        if not (path / required).exists():
            raise ModelUnavailableError(
                f"{path} has no {required}: not a sentence-transformers model directory."
            )
    weight_files = sorted(path.glob("*.safetensors"))
    if not weight_files:
        raise ModelUnavailableError(
            f"{path} has no .safetensors weights (pytorch_model.bin is not supported: "
            "convert it to safetensors)."
        )
    config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
    model = BertModel(config)
    weights = {}
    for file in weight_files:
        weights.update(mx.load(str(file)))
    model.load_weights(list(BertModel.sanitize(weights).items()), strict=True)
    model.set_dtype(getattr(mx, dtype))
    mx.eval(model.parameters())
    model.eval()

    limit = config.max_position_embeddings - config.position_offset
    settings_file = path / "sentence_bert_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    max_tokens = min(int(settings.get("max_seq_length") or limit), limit)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return SentenceEmbedder(model, tokenizer, Pooling.from_dir(root), max_tokens, str(source))


def _transformer_dir(root: Path) -> str:
    """The Transformer module's folder ("" for the repo root) according to modules.json."""
    modules_file = root / "modules.json"
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            if module.get("type", "").endswith("Transformer"):
                return module.get("path", "")
    return ""


def is_sentence_transformer_dir(source: str) -> bool:
    """True for a local directory that `load` can read."""
    root = Path(source).expanduser()
    if not root.is_dir():
        return False
    path = root / _transformer_dir(root)
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    from rag_core.embeddings.config import BERT_FAMILY

    return model_type in BERT_FAMILY and (path / "tokenizer.json").exists()
