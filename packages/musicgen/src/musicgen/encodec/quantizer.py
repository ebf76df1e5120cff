"""EnCodec's residual vector quantizer (Euclidean codebooks)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from musicgen.encodec.config import EncodecConfig


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
        self.layers = [EuclideanCodebook(config) for _ in range(config.num_quantizers)]

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
