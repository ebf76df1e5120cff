"""Quantized decoder: the transformer layers' matmuls with 4- or 8-bit weights.

``musicgen.load(..., quantize=4)`` calls ``quantize_decoder``. Every Linear of the decoder
layers (self- and cross-attention projections, feed-forward) gets group-wise affine weights
(``mx.quantize``: ``group_size`` weights share a scale and a bias); the code embeddings, the
text projection and the heads keep the compute dtype (the heads float32), so logits stay
float32. A 4-bit musicgen-small decoder is about a quarter of its float16 size.
"""

from __future__ import annotations

import mlx.nn as nn

from musicgen.errors import InvalidArgumentError

BITS = (4, 8)
GROUP_SIZE = 64


def check_bits(bits: int | None) -> int | None:
    """None/0/False (no quantization), 4 or 8; InvalidArgumentError otherwise."""
    if bits is None or bits is False or (type(bits) is int and bits == 0):
        return None
    if type(bits) is not int or bits not in BITS:
        raise InvalidArgumentError(
            f"quantize must be one of {', '.join(map(str, BITS))} (bits per weight) or None, "
            f"got {bits!r}."
        )
    return int(bits)


def quantize_decoder(decoder: nn.Module, bits: int = 4, group_size: int = GROUP_SIZE) -> int:
    """Quantize the decoder layers' Linear weights in place; return how many were quantized.

    A layer whose input width is not a multiple of ``group_size`` keeps full precision.
    """
    bits = check_bits(bits)
    if bits is None:
        return 0
    count = 0

    def eligible(path: str, module: nn.Module) -> bool:
        nonlocal count
        ok = (
            path.startswith("layers.")
            and isinstance(module, nn.Linear)
            and module.weight.shape[-1] % group_size == 0
        )
        count += ok
        return ok

    nn.quantize(decoder, group_size=group_size, bits=bits, class_predicate=eligible)
    return count
