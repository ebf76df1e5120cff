"""The MusicGen language model: a pre-norm transformer decoder over K parallel codebooks.

Each step embeds the K codes of one position (one embedding table per codebook, summed), adds
a sinusoidal position, runs causal self-attention (with a KV cache) and cross-attention to the
text, and predicts K next codes with one linear head per codebook.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from musicgen.cache import KVCache
from musicgen.config import DecoderConfig, activation

CrossKV = list[tuple[mx.array, mx.array]]


def sinusoidal_positions(start: int, length: int, dim: int) -> mx.array:
    """Positions start..start+length-1 as (length, dim) float32: cosines then sines."""
    half = dim // 2
    # Frequencies rounded once to float32, as the reference computes them.
    exponent = np.arange(half, dtype=np.float32) * np.float32(-math.log(10000) / (half - 1))
    frequencies = mx.array(np.exp(exponent.astype(np.float64)).astype(np.float32))
    angles = mx.arange(start, start + length, dtype=mx.float32)[:, None] * frequencies[None]
    table = mx.concatenate([mx.cos(angles), mx.sin(angles)], axis=-1)
    if dim % 2:
        table = mx.pad(table, [(0, 0), (0, 1)])
    return table


def causal_mask(length: int, offset: int) -> mx.array | None:
    """Boolean (length, offset + length) mask letting each new position see itself and the past."""
    if length == 1:
        return None
    queries = mx.arange(offset, offset + length)[:, None]
    return mx.arange(offset + length)[None] <= queries


def cross_attention_bias(mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, S) 1/0 text mask -> additive (B, 1, 1, S) bias that hides padding."""
    return ((1 - mask.astype(dtype)) * mx.finfo(dtype).min)[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention without biases; self-attention (cached) or cross-attention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def _heads(self, x: mx.array) -> mx.array:
        B, L, _ = x.shape
        return x.reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)

    def project_kv(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """Keys and values (B, H, S, D) of ``x``; cross-attention computes them once."""
        return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | None = None,
        cache: KVCache | None = None,
        kv: tuple[mx.array, mx.array] | None = None,
    ) -> mx.array:
        B, L, _ = x.shape
        if kv is None:
            keys, values = self.project_kv(x)
            if cache is not None:
                keys, values = cache.update_and_fetch(keys, values)
        else:
            keys, values = kv
        out = mx.fast.scaled_dot_product_attention(
            self._heads(self.q_proj(x)), keys, values, scale=self.scale, mask=mask
        )
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        dim = config.hidden_size
        self.self_attn = Attention(dim, config.num_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.encoder_attn = Attention(dim, config.num_attention_heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.ffn_dim, bias=False)
        self.fc2 = nn.Linear(config.ffn_dim, dim, bias=False)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def __call__(
        self,
        x: mx.array,
        cross_kv: tuple[mx.array, mx.array],
        cross_bias: mx.array,
        mask: mx.array | None,
        cache: KVCache | None,
    ) -> mx.array:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask=mask, cache=cache)
        x = x + self.encoder_attn(self.encoder_attn_layer_norm(x), mask=cross_bias, kv=cross_kv)
        return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))


class MusicGenDecoder(nn.Module):
    """The LM: codes (B, K, L) + text conditioning -> logits (B, K, L, vocab)."""

    def __init__(self, config: DecoderConfig, text_dim: int):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        if text_dim != dim and config.cross_attention_hidden_size is None:
            self.enc_to_dec_proj = nn.Linear(text_dim, dim)
        self.embed_tokens = [
            nn.Embedding(config.vocab_size + 1, dim) for _ in range(config.num_codebooks)
        ]
        self.layers = [DecoderLayer(config) for _ in range(config.num_hidden_layers)]
        self.layer_norm = nn.LayerNorm(dim)
        self.lm_heads = [
            nn.Linear(dim, config.vocab_size, bias=False) for _ in range(config.num_codebooks)
        ]

    def project_text(self, text_states: mx.array, text_mask: mx.array) -> mx.array:
        """T5 states (B, S, text_dim) -> the decoder-width states that cross-attention reads.

        Padding positions are zeroed after the projection, as the reference does; an all-zero
        mask therefore gives the all-zero states of the unconditional branch.
        """
        if "enc_to_dec_proj" in self:
            text_states = self.enc_to_dec_proj(text_states)
        return text_states * text_mask[..., None].astype(text_states.dtype)

    def cross_kv(self, states: mx.array) -> CrossKV:
        """Every layer's cross-attention keys and values of the text: once per generation."""
        return [layer.encoder_attn.project_kv(states) for layer in self.layers]

    def make_cache(self, max_length: int | None = None) -> list[KVCache]:
        return [KVCache(max_length) for _ in self.layers]

    def __call__(
        self,
        codes: mx.array,
        cross_kv: CrossKV,
        cross_bias: mx.array,
        cache: list[KVCache] | None = None,
    ) -> mx.array:
        _, K, L = codes.shape
        offset = cache[0].offset if cache else 0
        # config.scale_embedding is ignored, as the reference ignores it.
        x = sum(self.embed_tokens[k](codes[:, k]) for k in range(K))
        x = x + sinusoidal_positions(offset, L, x.shape[-1]).astype(x.dtype)
        mask = causal_mask(L, offset)
        for i, layer in enumerate(self.layers):
            x = layer(x, cross_kv[i], cross_bias, mask, cache[i] if cache else None)
        x = self.layer_norm(x)
        return mx.stack([head(x) for head in self.lm_heads], axis=1)

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Map transformers' 'decoder.*' and 'enc_to_dec_proj.*' keys to this module's names."""
        out = {}
        for key, value in weights.items():
            if key.endswith("embed_positions.weights"):
                continue  # the sinusoids are recomputed, never loaded
            key = key.removeprefix("decoder.model.decoder.").removeprefix("decoder.")
            out[key] = value
        return out
