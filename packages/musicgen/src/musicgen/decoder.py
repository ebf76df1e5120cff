"""The MusicGen language model: a pre-norm transformer decoder over K parallel codebooks.

Each step embeds the K codes of one position (one embedding table per codebook, summed), adds
a sinusoidal position, runs causal self-attention (with a KV cache) and cross-attention to the
text, and predicts K next codes with one linear head per codebook.

Few, large kernels per step: self-attention projects queries, keys and values with one matmul,
output projections add the residual in the same matmul (``addmm``), cross-attention keys and
values are computed once per generation, and the heads compute float32 logits. With a
``StaticCache`` the whole pass is compiled (see ``musicgen.cache``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, lru_cache

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from musicgen import kernels
from musicgen.cache import KVCache, StaticCache, StaticLayerCache, causal_mask
from musicgen.config import DecoderConfig, activation

# Every layer's cross-attention keys and values, (layers, B, H, S, D) each, and for the
# one-kernel step maybe their folded forms (``MusicGenDecoder.fold_cross_kv``).
CrossKV = tuple[mx.array, ...]
Cache = list[KVCache] | StaticCache

__all__ = [
    "Attention",
    "CrossKV",
    "DecoderLayer",
    "MusicGenDecoder",
    "causal_mask",
    "cross_attention_bias",
    "head_logits",
    "linear",
    "needs_cross_bias",
    "sinusoidal_positions",
]


@lru_cache(maxsize=8)
def _frequencies(half: int) -> mx.array:
    # Rounded once to float32, as the reference computes them.
    exponent = np.arange(half, dtype=np.float32) * np.float32(-math.log(10000) / (half - 1))
    return mx.array(np.exp(exponent.astype(np.float64)).astype(np.float32))


def sinusoidal_positions(start: int | mx.array, length: int, dim: int) -> mx.array:
    """Positions start..start+length-1 as (length, dim) float32: cosines then sines.

    ``start`` may be an int32 scalar array (a compiled pass keeps the position on the device).
    """
    positions = (mx.arange(length, dtype=mx.int32) + start).astype(mx.float32)
    angles = positions[:, None] * _frequencies(dim // 2)[None]
    table = mx.concatenate([mx.cos(angles), mx.sin(angles)], axis=-1)
    if dim % 2:
        table = mx.pad(table, [(0, 0), (0, 1)])
    return table


def cross_attention_bias(mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, S) 1/0 text mask -> additive (B, 1, 1, S) bias that hides padding."""
    return ((1 - mask.astype(dtype)) * mx.finfo(dtype).min)[:, None, None, :]


def needs_cross_bias(states: mx.array, mask: mx.array) -> bool:
    """Whether cross-attention to ``states`` needs ``cross_attention_bias(mask)`` (one sync).

    Not when every row is either unpadded or fully masked with all-zero states (the
    unconditional branch): such a row's keys and values are zero, so attending to all of them
    gives the zero output that attending to none (uniformly, as the reference does) gives.
    """
    full = mx.all(mask != 0, axis=1)
    empty = mx.all(mask == 0, axis=1) & mx.all(states == 0, axis=(1, 2))
    return not mx.all(full | empty).item()


# Up to this many rows of one position each (batch x CFG branches), a plain Linear runs as a
# batched matrix-vector product (one row per batch entry) rather than one small matrix product:
# on CUDA a 2-row float16 product goes to cuBLAS at about 3x the cost of a gemv.
GEMV_ROWS = 4
CPU_WEIGHT_LEFT_ROWS = 32  # on the CPU, up to this many rows compute (W x^T)^T


@cache
def weight_left_on_cpu() -> bool:
    """Whether a few-row product on the CPU runs as (W x^T)^T: OpenBLAS streams a weight faster
    as the left operand of a few-column product, MKL as the right one of a few-row product
    (x W^T). musicgen-small, 2 CPU cores, 2 rows: OpenBLAS 130 ms a step this way; MKL 115 ms
    this way, 75 ms the other."""
    from rag_core import blas_status

    return blas_status().vendor != "mkl"


def linear(
    layer: nn.Module,
    x: mx.array,
    residual: mx.array | None = None,
    *,
    norm: nn.Module | None = None,
    activation: Callable | None = None,
    fused: bool = False,
) -> mx.array:
    """``activation(layer(norm(x))) + residual`` for x (B, L, in), with the cheapest kernels.

    With ``fused`` (the compiled CUDA step) and a shape ``musicgen.kernels`` covers, it is one
    kernel. Otherwise a bias-free Linear over a few single positions is a batched
    matrix-vector product, and the residual is added in the same matmul (``addmm``).
    """
    if fused and kernels.linear_fits(x, layer) and kernels.activation_fits(activation):
        return kernels.fused_linear(x, layer, norm=norm, activation=activation, residual=residual)
    if norm is not None:
        x = norm(x)
    if activation is not None:
        out = activation(linear(layer, x))
        return out if residual is None else residual + out
    if type(layer) is nn.Linear and "bias" not in layer:
        weight = layer.weight
        # The batched gemv and addmm forms pay on GPUs; on the CPU each took about 2x one
        # plain BLAS product, and OpenBLAS streams a weight faster as the left operand of a
        # product with a few columns than as the right one of a product with a few rows.
        gpu = mx.default_device() != mx.cpu
        rows = x.size // x.shape[-1]
        if gpu and x.ndim == 3 and x.shape[1] == 1 and 1 < x.shape[0] <= GEMV_ROWS:
            # One view, (rows, in, out), of the (out, in) weight: transposed and repeated.
            out_dim, in_dim = weight.shape
            view = mx.as_strided(weight, (x.shape[0], in_dim, out_dim), (0, 1, in_dim))
            out = mx.matmul(x, view)
        elif gpu and residual is not None:
            return mx.addmm(residual, x, weight.T)
        elif not gpu and rows <= CPU_WEIGHT_LEFT_ROWS and weight_left_on_cpu():
            out = (weight @ x.reshape(rows, -1).T).T.reshape(*x.shape[:-1], -1)
        else:
            out = x @ weight.T
    else:
        out = layer(x)
    return out if residual is None else residual + out


def head_logits(x: mx.array, norm: nn.Module, heads: list, fused: bool = False) -> mx.array:
    """float32 logits (B, K, L, V) of every codebook's head on ``norm(x)``, x (B, L, D).

    ``norm`` runs in the compute dtype and its output is cast to float32 for the float32 heads.
    With ``fused`` (the compiled CUDA step) and a shape ``musicgen.kernels`` covers, the norm and
    all the heads are one kernel.
    """
    if fused and kernels.heads_fit(x, norm, heads):
        return kernels.heads(x, norm, heads)
    x = norm(x).astype(mx.float32)
    return mx.stack([linear(head, x) for head in heads], axis=1)


class Attention(nn.Module):
    """Multi-head attention without biases.

    Self-attention (the default) projects queries, keys and values with one matmul,
    ``qkv_proj`` (``MusicGenDecoder.sanitize`` joins the checkpoint's three), and appends its
    keys and values to a cache; cross-attention (``cross=True``) attends to keys and values
    that ``project_kv`` computed once.
    """

    def __init__(self, dim: int, num_heads: int, cross: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        if cross:
            self.q_proj = nn.Linear(dim, dim, bias=False)
            self.k_proj = nn.Linear(dim, dim, bias=False)
            self.v_proj = nn.Linear(dim, dim, bias=False)
        else:
            self.qkv_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def _heads(self, x: mx.array) -> mx.array:
        """(B, L, H x D) -> (B, H, L, D); for one position a reshape (the same memory order)."""
        B, L, _ = x.shape
        if L == 1:
            return x.reshape(B, self.num_heads, 1, -1)
        return x.reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)

    def project_kv(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """Cross-attention keys and values (B, H, S, D) of ``x`` (views; once per generation)."""
        return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | None = None,
        cache: KVCache | StaticLayerCache | None = None,
        kv: tuple[mx.array, mx.array] | None = None,
        residual: mx.array | None = None,
        norm: nn.Module | None = None,
        fused: bool = False,
    ) -> mx.array:
        """The attention of ``norm(x)`` projected back to ``dim``, plus ``residual`` if given.

        ``fused`` runs the CUDA kernels of ``musicgen.kernels`` (the compiled CUDA step; see
        ``StaticLayerCache.fused``): self-attention then writes its keys and values into the
        cache in place and needs no mask.
        """
        B, L, _ = x.shape
        if kv is None:
            qkv = linear(self.qkv_proj, x, norm=norm, fused=fused)
            if fused:
                out, cache.start = kernels.cached_attention(
                    qkv, cache.keys, cache.values, cache.start, scale=self.scale, layer=cache.layer
                )
                return linear(self.out_proj, out, residual, fused=True)
            if L == 1:  # (B, 3 x H x D) in memory order is (B, 3, H, 1, D): views, no copies
                qkv = qkv.reshape(B, 3, self.num_heads, 1, -1)
                queries, keys, values = qkv[:, 0], qkv[:, 1], qkv[:, 2]
            else:
                qkv = qkv.reshape(B, L, 3, self.num_heads, -1).transpose(2, 0, 3, 1, 4)
                queries, keys, values = qkv[0], qkv[1], qkv[2]
            if cache is not None:
                keys, values = cache.update_and_fetch(keys, values)
        else:
            queries = linear(self.q_proj, x, norm=norm, fused=fused)
            keys, values = kv
            if fused:
                out = kernels.attention(queries, keys, values, scale=self.scale, bias=mask)
                return linear(self.out_proj, out, residual, fused=True)
            queries = self._heads(queries)
        out = mx.fast.scaled_dot_product_attention(
            queries, keys, values, scale=self.scale, mask=mask
        )
        out = out.reshape(B, 1, -1) if L == 1 else out.transpose(0, 2, 1, 3).reshape(B, L, -1)
        return linear(self.out_proj, out, residual)


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        dim = config.hidden_size
        self.self_attn = Attention(dim, config.num_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.encoder_attn = Attention(dim, config.num_attention_heads, cross=True)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.ffn_dim, bias=False)
        self.fc2 = nn.Linear(config.ffn_dim, dim, bias=False)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def __call__(
        self,
        x: mx.array,
        cross_kv: tuple[mx.array, mx.array],
        cross_bias: mx.array | None,
        mask: mx.array | None,
        cache: KVCache | None,
    ) -> mx.array:
        fused = getattr(cache, "fused", False)
        x = self.self_attn(x, mask, cache, residual=x, norm=self.self_attn_layer_norm, fused=fused)
        x = self.encoder_attn(
            x, cross_bias, kv=cross_kv, residual=x, norm=self.encoder_attn_layer_norm, fused=fused
        )
        hidden = linear(self.fc1, x, norm=self.final_layer_norm, activation=self.act, fused=fused)
        return linear(self.fc2, hidden, residual=x, fused=fused)


class MusicGenDecoder(nn.Module):
    """The LM: codes (B, K, L) + text conditioning -> float32 logits (B, K, L, vocab)."""

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
        # The layers' weights stacked for the one-kernel step (make_static_cache): a plain
        # attribute, not parameters (the layers hold views of them).
        self.step_layers: kernels.StackedLayers | None = None

    def set_dtype(self, dtype: mx.Dtype, predicate=lambda t: mx.issubdtype(t, mx.floating)):
        """Cast the parameters to ``dtype``, except the heads: logits stay in float32."""
        super().set_dtype(dtype, predicate)
        for head in self.lm_heads:
            head.set_dtype(mx.float32, predicate)

    def project_text(self, text_states: mx.array, text_mask: mx.array) -> mx.array:
        """T5 states (B, S, text_dim) -> the decoder-width states that cross-attention reads.

        Padding positions are zeroed after the projection, as the reference does; an all-zero
        mask therefore gives the all-zero states of the unconditional branch.
        """
        if "enc_to_dec_proj" in self:
            text_states = self.enc_to_dec_proj(text_states)
        return text_states * text_mask[..., None].astype(text_states.dtype)

    def cross_kv(self, states: mx.array) -> CrossKV:
        """Every layer's cross-attention keys and values of the text, once per generation, as
        two contiguous (layers, B, H, S, D) arrays: no step copies them, and each layer reads a
        view."""
        pairs = [layer.encoder_attn.project_kv(states) for layer in self.layers]
        return mx.stack([k for k, _ in pairs]), mx.stack([v for _, v in pairs])

    def fold_cross_kv(self, cross_kv: CrossKV) -> CrossKV:
        """``cross_kv`` with the cross-attention's query and output projections folded into the
        text's keys and values (``kernels.fold_cross_attention``) where the one-kernel step
        runs and that pays for this text (``kernels.fold_fits``); else ``cross_kv``."""
        rows, length = cross_kv[0].shape[1], cross_kv[0].shape[3]
        if self.step_layers is None or not kernels.step_rows_fit(rows, self):
            return cross_kv
        if not kernels.fold_fits(rows, length, self):
            return cross_kv
        return kernels.fold_cross_attention(self.step_layers, self.config, cross_kv)

    def make_cache(self, max_length: int | None = None) -> list[KVCache]:
        """The plain cache: one growable KVCache per layer."""
        return [KVCache(max_length) for _ in self.layers]

    def make_static_cache(self, max_length: int, compile: bool = True) -> StaticCache:
        """Fixed-shape buffers for ``max_length`` positions; calls with it run compiled.

        Where the one-kernel step (``musicgen.kernels.decoder_step``) covers the layers, their
        weights are stacked for it first (once; again only if a weight was replaced since).
        """
        config = self.config
        cache = StaticCache(
            len(self.layers),
            max_length,
            config.num_attention_heads,
            config.head_dim,
            self.layer_norm.weight.dtype,
            compile=compile,
        )
        step = cache.fused and kernels.step_available() and kernels.step_fits(self)
        if not step:
            self.step_layers = None
        elif self.step_layers is None or not self.step_layers.current(self):
            self.step_layers = None  # the old stacks go before the new ones are made
            self.step_layers = kernels.stack_layers(self)
        return cache

    def __call__(
        self,
        codes: mx.array,
        cross_kv: CrossKV,
        cross_bias: mx.array | None,
        cache: Cache | None = None,
    ) -> mx.array:
        if isinstance(cache, StaticCache):
            return cache(self.forward, codes, cross_kv, cross_bias)
        return self.forward(codes, cross_kv, cross_bias, cache)

    def forward(
        self,
        codes: mx.array,
        cross_kv: CrossKV,
        cross_bias: mx.array | None,
        cache: list | None = None,
    ) -> mx.array:
        """The pass itself; ``cache`` holds one layer cache per layer (or None).

        ``cross_bias`` (``cross_attention_bias``) hides padded text positions; None when no
        row needs it (see ``needs_cross_bias``)."""
        rows, K, L = codes.shape
        barrier = getattr(cache[0], "barrier", None) if cache else None
        step = barrier is not None and L == 1 and self.step_layers is not None
        if step and kernels.step_rows_fit(rows, self):
            return self._step(codes, cross_kv, cross_bias, cache)
        offset = cache[0].offset if cache else 0
        # config.scale_embedding is ignored, as the reference ignores it.
        x = sum(self.embed_tokens[k](codes[:, k]) for k in range(K))
        x = x + sinusoidal_positions(offset, L, x.shape[-1]).astype(x.dtype)
        mask = cache[0].mask(L) if cache else causal_mask(L, 0)
        for i, layer in enumerate(self.layers):
            kv = (kernels.view(cross_kv[0], i), kernels.view(cross_kv[1], i))
            x = layer(x, kv, cross_bias, mask, cache[i] if cache else None)
        fused = bool(cache) and getattr(cache[0], "fused", False)
        return head_logits(x, self.layer_norm, self.lm_heads, fused)

    def _step(self, codes, cross_kv: CrossKV, cross_bias, cache: list) -> mx.array:
        """``forward`` of one position as one kernel (``musicgen.kernels.decoder_step``), then
        the fused heads; every layer cache's next start is the kernel's next position."""
        x, position = kernels.decoder_step(
            codes,
            self.step_layers,
            self.config,
            _frequencies(self.config.hidden_size // 2),
            (cache[0].keys, cache[0].values, cache[0].barrier),
            cache[-1].start,  # after the previous call's last write
            cross_kv,
            cross_bias,
            eps=self.layers[0].final_layer_norm.eps,
            activation=self.layers[0].act,
        )
        for layer_cache in cache:
            layer_cache.start = position
        return head_logits(x, self.layer_norm, self.lm_heads, fused=True)

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Map transformers' 'decoder.*' and 'enc_to_dec_proj.*' keys to this module's names.

        Each self-attention's q/k/v projections are joined into one ``qkv_proj``; if one is
        missing or their shapes differ they are left apart, for the loader to report.
        """
        out = {}
        for key, value in weights.items():
            if key.endswith("embed_positions.weights"):
                continue  # the sinusoids are recomputed, never loaded
            key = key.removeprefix("decoder.model.decoder.").removeprefix("decoder.")
            out[key] = value
        for key in [k for k in out if k.endswith(".self_attn.q_proj.weight")]:
            names = [key.replace(".q_proj.", f".{p}.") for p in ("q_proj", "k_proj", "v_proj")]
            parts = [out.get(name) for name in names]
            if any(p is None for p in parts) or len({tuple(p.shape) for p in parts}) != 1:
                continue
            for name in names:
                del out[name]
            out[key.replace(".q_proj.", ".qkv_proj.")] = mx.concatenate(parts)
        return out
