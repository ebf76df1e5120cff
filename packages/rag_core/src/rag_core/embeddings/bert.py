"""A BERT encoder in MLX: embeddings, post-norm transformer layers, last hidden states."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from rag_core.embeddings.config import BertConfig
from rag_core.embeddings.ops import ACTIVATIONS, attention


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.position_offset = config.position_offset

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array) -> mx.array:
        positions = mx.arange(input_ids.shape[1]) + self.position_offset
        h = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.norm(h)


class Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        dim = config.hidden_size
        self.n_heads = config.num_attention_heads
        self.scale = (dim // self.n_heads) ** -0.5
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        B, L, D = x.shape

        def heads(t: mx.array) -> mx.array:
            return t.reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        o = attention(q, k, v, self.scale, mask)
        return self.out(o.transpose(0, 2, 1, 3).reshape(B, L, D))


class Layer(nn.Module):
    """One post-norm transformer layer, as in the original BERT."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        x = self.attention_norm(x + self.attention(x, mask))
        return self.output_norm(x + self.output(self.act(self.intermediate(x))))


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = [Layer(config) for _ in range(config.num_hidden_layers)]

    def __call__(
        self,
        input_ids: mx.array,
        attention_mask: mx.array | None = None,
        token_type_ids: mx.array | None = None,
    ) -> mx.array:
        """Last hidden states (B, L, hidden_size); padding positions are masked out of attention."""
        if token_type_ids is None:
            token_type_ids = mx.zeros_like(input_ids)
        h = self.embeddings(input_ids, token_type_ids)
        mask = None
        if attention_mask is not None:
            # Additive mask over keys, broadcast over heads and queries.
            mask = mx.where(attention_mask[:, None, None, :].astype(mx.bool_), 0.0, -1e9)
            mask = mask.astype(h.dtype)
        for layer in self.layers:
            h = layer(h, mask)
        return h

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Map Hugging Face BertModel checkpoint names onto this module's names."""
        renames = (
            ("encoder.layer.", "layers."),
            ("attention.self.", "attention."),
            ("attention.output.dense.", "attention.out."),
            ("attention.output.LayerNorm.", "attention_norm."),
            ("intermediate.dense.", "intermediate."),
            ("output.dense.", "output."),
            ("output.LayerNorm.", "output_norm."),
            ("embeddings.LayerNorm.", "embeddings.norm."),
        )
        out = {}
        for name, value in weights.items():
            for prefix in ("bert.", "roberta.", "model."):
                if name.startswith(prefix):
                    name = name[len(prefix) :]
            if name.startswith(("pooler.", "cls.", "lm_head.")) or name.endswith("position_ids"):
                continue
            for old, new in renames:
                name = name.replace(old, new)
            out[name] = value
        return out
