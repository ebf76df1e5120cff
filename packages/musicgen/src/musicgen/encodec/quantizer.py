"""EnCodec's residual vector quantizer (Euclidean codebooks)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from musicgen.encodec.config import EncodecConfig
from musicgen.errors import InvalidArgumentError


class EuclideanCodebook(nn.Module):
    """One codebook: `embed` (codebook_size, codebook_dim)."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.embed = mx.zeros((config.codebook_size, config.codebook_dim))

    def encode(self, x: mx.array) -> mx.array:
        """Index of the nearest entry for each vector of `x` (..., dim), in float32."""
        embed = self.embed.astype(mx.float32)
        x = x.astype(mx.float32)
        # Same expression and order as transformers, so near ties round alike.
        dist = -(
            (mx.sum(x * x, axis=-1, keepdims=True) - 2 * (x @ embed.T))
            + mx.sum(embed * embed, axis=-1)
        )
        return mx.argmax(dist, axis=-1).astype(mx.int32)

    def decode(self, codes: mx.array) -> mx.array:
        return self.embed[codes]


class ResidualVectorQuantizer(nn.Module):
    """Each codebook quantizes what the previous ones left over; decoding sums their entries."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.codebook_size = config.codebook_size
        self.layers = [EuclideanCodebook(config) for _ in range(config.num_quantizers)]

    def check_codes(self, codes: mx.array) -> mx.array:
        """Validate codes (N, K, T) for `decode` (K up to the codebooks stored); return int32."""
        if not isinstance(codes, mx.array):
            codes = mx.array(np.asarray(codes))
        usage = (
            f"pass int codes shaped (batch, codebooks, frames) with 1 to {len(self.layers)} "
            f"codebooks and values in [0, {self.codebook_size})"
        )
        if codes.ndim != 3 or 0 in codes.shape or codes.shape[1] > len(self.layers):
            raise InvalidArgumentError(f"codes have shape {tuple(codes.shape)}; {usage}.")
        if not mx.issubdtype(codes.dtype, mx.integer):
            raise InvalidArgumentError(f"codes have dtype {codes.dtype}; {usage}.")
        low, high = mx.min(codes).item(), mx.max(codes).item()
        if low < 0 or high >= self.codebook_size:
            raise InvalidArgumentError(f"codes range over [{low}, {high}]; {usage}.")
        return codes.astype(mx.int32)

    def encode(self, x: mx.array, num_codebooks: int) -> mx.array:
        """Embeddings (N, T, dim) -> codes (N, num_codebooks, T) int32."""
        residual = x.astype(mx.float32)
        codes = []
        for codebook in self.layers[:num_codebooks]:
            indices = codebook.encode(residual)
            residual = residual - codebook.decode(indices).astype(mx.float32)
            codes.append(indices)
        return mx.stack(codes, axis=1)

    def decode(self, codes: mx.array) -> mx.array:
        """Codes (N, K, T) -> embeddings (N, T, dim), the sum over the first K codebooks."""
        out = self.layers[0].decode(codes[:, 0])
        for k in range(1, codes.shape[1]):
            out = out + self.layers[k].decode(codes[:, k])
        return out
