"""Load a sentence-transformers repo (or a bare BERT checkpoint) as an MLX SentenceEmbedder."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np

from rag_core.embeddings.bert import BertModel
from rag_core.embeddings.config import BertConfig
from rag_core.embeddings.pooling import Pooling
from rag_core.errors import ModelUnavailableError

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*/config.json", "vocab.txt"]


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
        encodings = self._truncating.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(texts), width), dtype=np.int32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return mx.array(ids), mx.array(mask)

    def encode(self, texts: list[str] | str, batch_size: int = 32) -> np.ndarray:
        """Embed texts: (N, dim) float32 (a single string gives (dim,))."""
        if isinstance(texts, str):
            return self.encode([texts], batch_size)[0]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length waste little compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = self.tokenize([texts[i] for i in rows])
            vectors = self.pooling(self.model(ids, mask), mask).astype(mx.float32)
            out[rows] = np.array(vectors)
        return out

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
