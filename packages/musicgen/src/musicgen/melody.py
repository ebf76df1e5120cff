"""MusicGen-Melody's language model: the conditioning is prepended to the codes, not attended to.

transformers' MusicgenMelody layout: the decoder layers have self-attention only. The melody's
chroma (one-hot pitch classes, projected by ``audio_enc_to_dec_proj`` and tiled or cut to
``chroma_length`` frames) and the text states (projected by ``enc_to_dec_proj``, padding
zeroed) form a prefix that the first decoding call runs through the decoder before the first
code, so every later step attends to it through the KV cache. The unconditional branch of
classifier-free guidance has the "no melody" chroma (pitch class 0 in every frame) and all-zero
text states.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from musicgen.cache import KVCache, StaticCache, causal_mask
from musicgen.config import DecoderConfig, activation
from musicgen.decoder import (
    Attention,
    MusicGenDecoder,
    head_logits,
    linear,
    sinusoidal_positions,
)


class MelodyDecoderLayer(nn.Module):
    """A decoder layer without cross-attention."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        dim = config.hidden_size
        self.self_attn = Attention(dim, config.num_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.ffn_dim, bias=False)
        self.fc2 = nn.Linear(config.ffn_dim, dim, bias=False)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def __call__(self, x: mx.array, mask: mx.array | None, cache: KVCache | None) -> mx.array:
        fused = getattr(cache, "fused", False)
        x = self.self_attn(x, mask, cache, residual=x, norm=self.self_attn_layer_norm, fused=fused)
        hidden = linear(self.fc1, x, norm=self.final_layer_norm, activation=self.act, fused=fused)
        return linear(self.fc2, hidden, residual=x, fused=fused)


class MelodyDecoder(nn.Module):
    """The LM of MusicGen-Melody: codes (B, K, L) after a conditioning prefix -> logits.

    It has MusicGenDecoder's interface, so ``generate_step`` drives both: ``cross_kv`` returns
    the prefix itself and the call prepends it when the cache is empty.
    """

    def __init__(self, config: DecoderConfig, text_dim: int, num_chroma: int, chroma_length: int):
        super().__init__()
        self.config = config
        self.num_chroma = num_chroma
        self.chroma_length = chroma_length
        dim = config.hidden_size
        if text_dim != dim:
            self.enc_to_dec_proj = nn.Linear(text_dim, dim)
        if num_chroma != dim:
            self.audio_enc_to_dec_proj = nn.Linear(num_chroma, dim)
        self.embed_tokens = [
            nn.Embedding(config.vocab_size + 1, dim) for _ in range(config.num_codebooks)
        ]
        self.layers = [MelodyDecoderLayer(config) for _ in range(config.num_hidden_layers)]
        self.layer_norm = nn.LayerNorm(dim)
        self.lm_heads = [
            nn.Linear(dim, config.vocab_size, bias=False) for _ in range(config.num_codebooks)
        ]

    project_text = MusicGenDecoder.project_text
    sanitize = staticmethod(MusicGenDecoder.sanitize)

    def no_melody(self, batch: int) -> mx.array:
        """The chroma of "no melody" (pitch class 0), as the reference conditions without one."""
        return mx.broadcast_to(
            mx.eye(self.num_chroma, dtype=mx.float32)[:1], (batch, 1, self.num_chroma)
        )

    def project_chroma(self, chroma: mx.array) -> mx.array:
        """One-hot chroma (B, T, num_chroma) -> (B, chroma_length, D), tiled or cut."""
        x = chroma.astype(self.layer_norm.weight.dtype)
        if "audio_enc_to_dec_proj" in self:
            x = self.audio_enc_to_dec_proj(x)
        if x.shape[1] < self.chroma_length:
            x = mx.tile(x, (1, math.ceil(self.chroma_length / x.shape[1]), 1))
        return x[:, : self.chroma_length]

    def conditioning(
        self, text_states: mx.array, chroma: mx.array | None = None
    ) -> tuple[mx.array, mx.array, tuple[mx.array, mx.array]]:
        """The prefix of the conditional and of the unconditional branch, for generate_step.

        ``text_states`` (B, S, D) come from ``project_text``; ``chroma`` (B, T, num_chroma) is
        the melody (None: no melody). Returns (prefix, mask, (null prefix, mask)); the mask is
        all ones, as the reference attends to every prefix position (padding included).
        """
        batch = text_states.shape[0]
        null = self.project_chroma(self.no_melody(batch))
        melody = null if chroma is None else self.project_chroma(chroma)
        prefix = mx.concatenate([melody, text_states], axis=1)
        null_prefix = mx.concatenate([null, mx.zeros_like(text_states)], axis=1)
        mask = mx.ones(prefix.shape[:2], mx.int32)
        return prefix, mask, (null_prefix, mask)

    def cross_kv(self, prefix: mx.array) -> mx.array:
        """The conditioning as the first call consumes it: the prefix itself."""
        return prefix

    def set_dtype(self, dtype: mx.Dtype, predicate=lambda t: mx.issubdtype(t, mx.floating)):
        """Cast the parameters to ``dtype``, except the heads: logits stay in float32."""
        super().set_dtype(dtype, predicate)
        for head in self.lm_heads:
            head.set_dtype(mx.float32, predicate)

    def make_cache(self, max_length: int | None = None) -> list[KVCache]:
        """The plain cache: one growable KVCache per layer."""
        prefix = self.chroma_length + 64  # + text tokens: the cache grows if a prompt is longer
        return [KVCache(None if max_length is None else max_length + prefix) for _ in self.layers]

    def make_static_cache(self, max_length: int, compile: bool = True) -> PrefixStaticCache:
        """Fixed-shape buffers for ``max_length`` code positions and the prefix; compiled."""
        return PrefixStaticCache(self, max_length, compile)

    def __call__(
        self,
        codes: mx.array,
        prefix: mx.array,
        cross_bias: mx.array | None = None,
        cache: list[KVCache] | PrefixStaticCache | None = None,
    ) -> mx.array:
        """Float32 logits (B, K, L, vocab) of the codes (B, K, L); the prefix is fed on the first
        call. ``cross_bias`` is unused (the prefix is attended to in full, as in the reference).
        """
        _, K, L = codes.shape
        static = isinstance(cache, PrefixStaticCache)
        offset = cache.offset if static else cache[0].offset if cache else 0
        x = sum(self.embed_tokens[k](codes[:, k]) for k in range(K))
        if offset == 0:
            x = mx.concatenate([prefix.astype(x.dtype), x], axis=1)
        logits = cache(x) if static else self.forward(x, cache)
        return logits[:, :, -L:]

    def forward(self, x: mx.array, cache: list | None = None) -> mx.array:
        """The pass over embedded inputs (B, T, D) -> logits of every position (B, K, T, V)."""
        length = x.shape[1]
        offset = cache[0].offset if cache else 0
        x = x + sinusoidal_positions(offset, length, x.shape[-1]).astype(x.dtype)
        mask = cache[0].mask(length) if cache else causal_mask(length, 0)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, cache[i] if cache else None)
        fused = bool(cache) and getattr(cache[0], "fused", False)
        return head_logits(x, self.layer_norm, self.lm_heads, fused)


class PrefixStaticCache:
    """A StaticCache sized at the first call, when the prefix length is known.

    StaticCache counts positions along its input's last axis, so the embedded inputs travel
    through it as (B, D, T).
    """

    def __init__(self, decoder: MelodyDecoder, max_length: int, compile: bool = True):
        self.decoder = decoder
        self.max_length = max_length
        self.compile = compile
        self.cache: StaticCache | None = None

    @property
    def offset(self) -> int:
        return 0 if self.cache is None else self.cache.offset

    def __call__(self, x: mx.array) -> mx.array:
        if self.cache is None:
            config = self.decoder.config
            self.cache = StaticCache(
                len(self.decoder.layers),
                self.max_length + x.shape[1],  # the prefix and the codes fed with it, and more
                config.num_attention_heads,
                config.head_dim,
                self.decoder.layer_norm.weight.dtype,
                compile=self.compile,
            )
        return self.cache(self._forward, x.swapaxes(1, 2))

    def _forward(self, x: mx.array, layers: list) -> mx.array:
        return self.decoder.forward(x.swapaxes(1, 2), layers)
