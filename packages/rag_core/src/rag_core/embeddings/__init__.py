"""Sentence embeddings in MLX: a BERT-family encoder loaded from sentence-transformers repos."""

from rag_core.embeddings.bert import BertModel
from rag_core.embeddings.config import BertConfig
from rag_core.embeddings.pooling import Pooling
from rag_core.embeddings.sentence_transformer import (
    SentenceEmbedder,
    is_sentence_transformer_dir,
    load,
)

__all__ = [
    "BertConfig",
    "BertModel",
    "Pooling",
    "SentenceEmbedder",
    "is_sentence_transformer_dir",
    "load",
]
