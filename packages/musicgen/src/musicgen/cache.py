"""Self-attention key/value caches: a growable one per layer, and a fixed-shape compiled one.

``KVCache`` is the plain path: its buffers grow as needed and attention reads the positions
written so far. ``StaticCache`` holds every layer's keys and values in buffers of the whole
generation's length, written at a position held on the device, so that each decoding call has
the same shapes and the decoder's forward pass compiles once (``mx.compile``) per input length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from musicgen import kernels


def causal_mask(length: int, offset: int) -> mx.array | None:
    """Boolean (length, offset + length) mask letting each new position see itself and the past."""
    if length == 1:
        return None
    queries = mx.arange(offset, offset + length)[:, None]
    return mx.arange(offset + length)[None] <= queries


class KVCache:
    """Keys and values of the positions seen so far, in a buffer allocated once per generation.

    ``max_length`` (known from the duration) sizes the buffer up front; without it the buffer
    grows in chunks of ``step`` positions.
    """

    def __init__(self, max_length: int | None = None, step: int = 256):
        self.max_length = max_length
        self.step = step
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def mask(self, length: int) -> mx.array | None:
        """The self-attention mask of ``length`` new positions (before they are written)."""
        return causal_mask(length, self.offset)

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Append (B, H, L, D) keys and values; return all of them so far."""
        start, end = self.offset, self.offset + keys.shape[2]
        if self.keys is None or end > self.keys.shape[2]:
            self._grow(keys, values, end)
        self.keys[..., start:end, :] = keys
        self.values[..., start:end, :] = values
        self.offset = end
        return self.keys[..., :end, :], self.values[..., :end, :]

    def _grow(self, keys: mx.array, values: mx.array, needed: int) -> None:
        if self.keys is None and self.max_length is not None and needed <= self.max_length:
            size = self.max_length
        else:
            size = (needed + self.step - 1) // self.step * self.step
        B, H, _, D = keys.shape
        new_keys = mx.zeros((B, H, size, D), keys.dtype)
        new_values = mx.zeros((B, H, size, values.shape[3]), values.dtype)
        if self.keys is not None:
            new_keys[..., : self.offset, :] = self.keys[..., : self.offset, :]
            new_values[..., : self.offset, :] = self.values[..., : self.offset, :]
        self.keys, self.values = new_keys, new_values


class StaticLayerCache:
    """One layer's view of a StaticCache inside a decoding call.

    ``offset`` is an int32 scalar array (the positions written before this call); attention
    reads the whole buffer and the mask hides the positions not written yet. With ``fused``
    the CUDA attention kernel (``musicgen.kernels.cached_attention``) reads ``keys``/``values``,
    writes the new positions into them in place and replaces ``start`` with the next one.
    Fused, ``keys``/``values`` are every layer's, (layers, B, H, S, D), and this layer's are
    at index ``layer`` (the kernels write into the buffers themselves, never through a view);
    ``barrier`` is the grid barrier's state the one-kernel step (``musicgen.kernels.decoder_step``)
    takes with them.
    """

    def __init__(
        self,
        keys: mx.array,
        values: mx.array,
        offset: mx.array,
        start: mx.array,
        fused: bool = False,
        barrier: mx.array | None = None,
        layer: int = 0,
    ):
        self.keys = keys
        self.values = values
        self.offset = offset
        self.start = start  # offset as the (1,) start index slice_update takes
        self.fused = fused
        self.barrier = barrier
        self.layer = layer

    def mask(self, length: int) -> mx.array | None:
        """(length, max_length) additive mask: query i sees the keys at positions <= offset + i.

        Additive rather than boolean: CUDA's attention kernels take it at lower cost. None when
        fused (the kernel is causal by position).
        """
        if self.fused:
            return None
        queries = self.offset + mx.arange(length, dtype=mx.int32)
        visible = mx.arange(self.keys.shape[2], dtype=mx.int32)[None] <= queries[:, None]
        return mx.where(visible, 0, -mx.inf).astype(self.keys.dtype)

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Write (B, H, L, D) keys and values at ``offset``; return the whole buffers."""
        self.keys = mx.slice_update(self.keys, keys, self.start, axes=(2,))
        self.values = mx.slice_update(self.values, values, self.start, axes=(2,))
        return self.keys, self.values


Forward = Callable[..., mx.array]  # forward(codes, *args, caches) -> logits


class StaticCache:
    """Every layer's keys and values for ``max_length`` positions, and the compiled forward pass.

    Call it as ``cache(forward, codes, *args)`` in place of ``forward(codes, *args, caches)``:
    the buffers are allocated at the first call (batch from ``codes``), the position lives on
    the device, and with ``compile`` the whole pass is traced once per input length and replayed
    after that. ``forward`` must be the same function at every call: its weights are captured
    when it is traced, so a StaticCache serves one generation.

    ``fused`` (default: where ``musicgen.kernels`` runs, compiled) runs the layers' CUDA
    kernels, whose attention writes into the buffers in place: the buffers are then allocated
    once (one array of every layer's keys, one of the values) and never copied. None chooses.
    """

    def __init__(
        self,
        num_layers: int,
        max_length: int,
        num_heads: int,
        head_dim: int,
        dtype: mx.Dtype,
        compile: bool = True,
        fused: bool | None = None,
    ):
        if fused is None:
            fused = compile and kernels.available() and kernels.attention_fits(head_dim, dtype)
        self.fused = fused
        self.num_layers = num_layers
        self.max_length = max_length
        self.shape = (num_heads, max_length, head_dim)
        self.dtype = dtype
        self.offset = 0  # positions written, on the host
        self.keys: list[mx.array] | None = None
        self.values: list[mx.array] | None = None
        self._buffers: tuple[mx.array, mx.array, mx.array] | None = None  # fused: see _pass
        self._position = mx.array(0, dtype=mx.int32)  # the same, on the device
        # Fused: each layer's start index, as its last attention kernel output it.
        self._starts = [mx.zeros((kernels.POSITION_SLOTS,), mx.int32)] * num_layers
        self._forward: Forward | None = None
        self._run = mx.compile(self._pass) if compile else self._pass

    def __call__(self, forward: Forward, codes: mx.array, *args: Any) -> mx.array:
        length = codes.shape[-1]
        if self.offset + length > self.max_length:
            raise ValueError(
                f"the cache holds {self.max_length} positions; {self.offset} are written and "
                f"{length} more do not fit."
            )
        if self._forward is None:
            self._forward = forward
        elif forward != self._forward:
            raise ValueError("a StaticCache serves one forward function (one generation).")
        shape = (codes.shape[0], *self.shape)
        if self.fused:
            if self._buffers is None:  # real buffers before the kernels write into them
                keys, values = (mx.zeros((self.num_layers, *shape), self.dtype) for _ in "kv")
                barrier = mx.zeros((kernels.BARRIER_WORDS,), mx.uint32)
                self._buffers = (keys, values, barrier)
                mx.eval(self._buffers)
            logits, self._position, self._starts = self._run(
                codes, args, None, None, self._position, self._starts, self._buffers
            )
        else:
            if self.keys is None:
                self.keys = [mx.zeros(shape, self.dtype) for _ in range(self.num_layers)]
                self.values = [mx.zeros(shape, self.dtype) for _ in range(self.num_layers)]
            keys, values = self.keys, self.values
            self.keys = self.values = None  # the pass may then update the buffers in place
            logits, self.keys, self.values, self._position = self._run(
                codes, args, keys, values, self._position, None
            )
        self.offset += length
        return logits

    def _pass(
        self,
        codes: mx.array,
        args: tuple,
        keys: list[mx.array] | None,
        values: list[mx.array] | None,
        position: mx.array,
        starts: list[mx.array] | None,
        buffers: tuple[mx.array, mx.array, mx.array] | None = None,
    ) -> tuple[mx.array, ...]:
        if buffers is not None:  # fused: (every layer's keys, values, the grid barrier)
            keys, values, barrier = buffers
            layers = [
                StaticLayerCache(keys, values, position, start, True, barrier, layer=i)
                for i, start in enumerate(starts)
            ]
        else:
            start = position.reshape(1)
            layers = [
                StaticLayerCache(k, v, position, start)
                for k, v in zip(keys, values, strict=True)
            ]
        logits = self._forward(codes, *args, layers)
        position = position + codes.shape[-1]
        if self.fused:  # each layer's next start comes out of its attention kernel
            return logits, position, [c.start for c in layers]
        return logits, [c.keys for c in layers], [c.values for c in layers], position
