"""The decoder's weights stacked by kind, for the one-kernel step (``musicgen.kernels.step``).

The step reads every layer's weights of one kind (the QKV projections, the fc1s, ...) from one
(layers, ...) array. ``stack_layers`` makes those arrays one kind at a time and points every
layer's parameter at a slice view of its stack, so the weights are never held twice;
``StackedLayers.current`` tells whether the layers still hold those views (nothing replaced a
weight since).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

# The layers' weights, stacked by kind: (name, path of the Linear in a DecoderLayer).
LINEARS = (
    ("qkv", "self_attn.qkv_proj"),
    ("out", "self_attn.out_proj"),
    ("cross_q", "encoder_attn.q_proj"),
    ("cross_out", "encoder_attn.out_proj"),
    ("fc1", "fc1"),
    ("fc2", "fc2"),
)
NORMS = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")


def layer_module(layer: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` (dotted) in ``layer``."""
    for name in path.split("."):
        layer = getattr(layer, name)
    return layer


@dataclass
class StackedLayers:
    """The decoder's weights by kind (``arrays``: one (layers, ...) array each, the embeddings
    (codebooks, vocab + 1, D)) and the per-layer views the modules hold (``views``)."""

    arrays: dict[str, mx.array]
    views: list[mx.array]

    def current(self, decoder: nn.Module) -> bool:
        """Whether the decoder still holds these views (no weight was replaced since)."""
        return all(a is b for a, b in zip(_views(decoder), self.views, strict=True))


def stack_layers(decoder: nn.Module) -> StackedLayers:
    """Stack the decoder's weights by kind for ``decoder_step``, one kind at a time, and replace
    the layers' weights by views of the stacks: the memory is not doubled."""
    layers = decoder.layers
    arrays: dict[str, mx.array] = {}
    for name, path in LINEARS:
        modules = [layer_module(layer, path) for layer in layers]
        arrays[name] = _stack([m.weight for m in modules])
        for i, module in enumerate(modules):
            module.weight = view(arrays[name], i)
    norms = [getattr(layer, name) for layer in layers for name in NORMS]
    stacked = _stack([p for norm in norms for p in (norm.weight, norm.bias)])
    arrays["norms"] = stacked.reshape(len(layers), 2 * len(NORMS), -1)
    for i, norm in enumerate(norms):
        norm.weight, norm.bias = view(stacked, 2 * i), view(stacked, 2 * i + 1)
    arrays["embed"] = _stack([e.weight for e in decoder.embed_tokens])
    for k, embedding in enumerate(decoder.embed_tokens):
        embedding.weight = view(arrays["embed"], k)
    views = _views(decoder)
    mx.eval(views, list(arrays.values()))
    return StackedLayers(arrays, views)


def view(stacked: mx.array, index: int) -> mx.array:
    """``stacked[index]`` without a copy: a slice is a view (an integer index gathers a copy)."""
    return stacked[index : index + 1].squeeze(0)


def _stack(arrays: list[mx.array]) -> mx.array:
    stacked = mx.stack(arrays)
    mx.eval(stacked)
    return stacked


def _views(decoder: nn.Module) -> list[mx.array]:
    """Every array ``stack_layers`` stacks, in order."""
    views = []
    for layer in decoder.layers:
        views += [layer_module(layer, path).weight for _, path in LINEARS]
        for name in NORMS:
            views += [getattr(layer, name).weight, getattr(layer, name).bias]
    return views + [e.weight for e in decoder.embed_tokens]
