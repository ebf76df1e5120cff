"""The self-attention key/value cache of one decoder layer."""

from __future__ import annotations

import mlx.core as mx


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
