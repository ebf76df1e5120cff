"""The T5 text encoder that turns prompts into the hidden states MusicGen attends to."""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as nn

from musicgen.config import T5Config, activation


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> mx.array:
    """T5's bidirectional relative-position bucket of every (query, key) pair: (length, length)."""
    positions = mx.arange(length)
    relative = positions[None, :] - positions[:, None]  # key - query
    num_buckets //= 2
    buckets = (relative > 0).astype(mx.int32) * num_buckets
    distance = mx.abs(relative)
    max_exact = num_buckets // 2
    # Log-spaced buckets beyond max_exact, computed in float32 as the reference does.
    scaled = mx.log(mx.maximum(distance, 1).astype(mx.float32) / max_exact)
    scaled = scaled / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    large = mx.minimum(max_exact + scaled.astype(mx.int32), num_buckets - 1)
    return buckets + mx.where(distance < max_exact, distance, large)


class Attention(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads = config.num_heads
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        B, L, _ = x.shape
        q, k, v = (
            proj(x).reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)
            for proj in (self.q, self.k, self.v)
        )
        # T5 folds the scale into its weights: no 1/sqrt(d) here.
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0, mask=bias)
        return self.o(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class FeedForward(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.gated = config.is_gated
        if self.gated:
            self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
            self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(config.activation)

    def __call__(self, x: mx.array) -> mx.array:
        if self.gated:
            return self.wo(self.act(self.wi_0(x)) * self.wi_1(x))
        return self.wo(self.act(self.wi(x)))


class Block(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.attention = Attention(config)
        self.attention_norm = nn.RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.ff = FeedForward(config)
        self.ff_norm = nn.RMSNorm(config.d_model, eps=config.layer_norm_epsilon)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        x = _clamp_half(x + self.attention(self.attention_norm(x), bias))
        return _clamp_half(x + self.ff(self.ff_norm(x)))


def _clamp_half(x: mx.array) -> mx.array:
    # T5 overflows float16 in its feed-forward layers; clamp as the reference does.
    if x.dtype != mx.float16:
        return x
    limit = float(mx.finfo(mx.float16).max) - 1000
    return mx.clip(x, -limit, limit)


class T5Encoder(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.relative_attention_bias = nn.Embedding(
            config.relative_attention_num_buckets, config.num_heads
        )
        self.blocks = [Block(config) for _ in range(config.num_layers)]
        self.final_layer_norm = nn.RMSNorm(config.d_model, eps=config.layer_norm_epsilon)

    def __call__(self, tokens: mx.array, mask: mx.array) -> mx.array:
        """tokens (B, S) int, mask (B, S) 1 for tokens, 0 for padding -> hidden states (B, S, D)."""
        x = self.embed_tokens(tokens)
        buckets = relative_position_buckets(
            tokens.shape[1],
            self.config.relative_attention_num_buckets,
            self.config.relative_attention_max_distance,
        )
        position_bias = self.relative_attention_bias(buckets).transpose(2, 0, 1)[None]
        padding = (1 - mask[:, None, None, :].astype(x.dtype)) * mx.finfo(x.dtype).min
        bias = (position_bias.astype(x.dtype) + padding).astype(x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        return self.final_layer_norm(x)

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Rename transformers' T5EncoderModel keys (without 'text_encoder.') to this module's.

        The embedding may be stored as 'shared', 'encoder.embed_tokens' or both (tied); the
        encoder's own copy wins, as it is the one the reference encoder uses.
        """
        out = {_rename(key): value for key, value in weights.items()}
        if "encoder.embed_tokens.weight" in weights:
            out["embed_tokens.weight"] = weights["encoder.embed_tokens.weight"]
        return out


_RENAMES = [
    (r"^(shared|encoder\.embed_tokens)\.", "embed_tokens."),
    (
        r"^encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.",
        "relative_attention_bias.",
    ),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"blocks.\1.attention."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"blocks.\1.attention_norm."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.", r"blocks.\1.ff."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"blocks.\1.ff_norm."),
    (r"^encoder\.final_layer_norm\.", "final_layer_norm."),
]


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key
