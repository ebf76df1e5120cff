"""BertConfig: the encoder hyper-parameters, read from a checkpoint's config.json."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

# model_type values whose checkpoints share BERT's layout (post-norm encoder, absolute positions).
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "camembert")


@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    model_type: str = "bert"
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    @classmethod
    def from_dict(cls, params: dict) -> BertConfig:
        """Build from a config.json dict, ignoring keys this encoder does not use."""
        names = inspect.signature(cls).parameters
        config = cls(**{k: v for k, v in params.items() if k in names})
        if config.model_type not in BERT_FAMILY:
            raise ValueError(
                f"model_type '{config.model_type}' is not a BERT-family encoder "
                f"(supported: {', '.join(BERT_FAMILY)})."
            )
        if config.position_embedding_type != "absolute":
            raise ValueError(
                f"position_embedding_type '{config.position_embedding_type}' is not supported "
                "(only 'absolute')."
            )
        if config.hidden_size % config.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads.")
        return config

    @property
    def position_offset(self) -> int:
        """RoBERTa-style models number positions from pad_token_id + 1."""
        return self.pad_token_id + 1 if self.model_type != "bert" else 0
