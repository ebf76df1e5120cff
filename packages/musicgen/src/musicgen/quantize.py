"""Quantized weights: the decoder's and the T5 text encoder's matmuls in 4 or 8 bits.

``musicgen.load(..., quantize=4)`` calls ``quantize_model``. Every Linear of the decoder layers
(self- and cross-attention projections, feed-forward) and of the T5 encoder's blocks
(attention, feed-forward) gets group-wise affine weights (``mx.quantize``: ``group_size``
weights share a scale and a bias), as does T5's token embedding. The decoder's code
embeddings, the text projection and the heads keep the compute dtype (the heads float32), so
logits stay float32; T5's relative-position bias and norms stay unquantized too.

T5 gets ``TEXT_BITS[bits]``: 8 bits in both cases. At musicgen-small's shapes (random
weights) 4 bits moved its hidden states by 33% (relative L2) and the guided logits by 31%,
more than the whole 4-bit decoder does (15%); 8 bits by 2.3% and 2.1%, and still halve T5
(0.22 -> 0.12 GB in float16). Measurements: docs/performance.md,
tests/musicgen/test_t5_quantize.py.
"""

from __future__ import annotations

from typing import Any

import mlx.nn as nn

from musicgen.errors import InvalidArgumentError

BITS = (4, 8)
GROUP_SIZE = 64
TEXT_BITS = {4: 8, 8: 8}  # T5's bits for each requested width (see above)


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


def quantize_model(model: Any, bits: int | None) -> dict[str, int]:
    """Quantize ``model.decoder`` and ``model.text_encoder`` in place (a MusicGen, or anything
    with those two); return how many modules of each were quantized."""
    bits = check_bits(bits)
    if bits is None:
        return {"decoder": 0, "text_encoder": 0}
    return {
        "decoder": quantize_decoder(model.decoder, bits),
        "text_encoder": quantize_text_encoder(model.text_encoder, TEXT_BITS[bits]),
    }


def quantize_decoder(decoder: nn.Module, bits: int = 4, group_size: int = GROUP_SIZE) -> int:
    """Quantize the decoder layers' Linear weights in place; return how many were quantized.

    A layer whose input width is not a multiple of ``group_size`` keeps full precision.
    """
    return _quantize(decoder, bits, group_size, lambda path: path.startswith("layers."))


def quantize_text_encoder(encoder: nn.Module, bits: int = 4, group_size: int = GROUP_SIZE) -> int:
    """Quantize the T5 blocks' Linear weights and the token embedding in place; return how many
    modules were quantized (those whose width is not a multiple of ``group_size`` are kept)."""
    return _quantize(
        encoder,
        bits,
        group_size,
        lambda path: path.startswith("blocks.") or path == "embed_tokens",
    )


def _quantize(module: nn.Module, bits: int, group_size: int, selected) -> int:
    bits = check_bits(bits)
    if bits is None:
        return 0
    count = 0

    def eligible(path: str, child: nn.Module) -> bool:
        nonlocal count
        ok = (
            selected(path)
            and isinstance(child, (nn.Linear, nn.Embedding))
            and child.weight.shape[-1] % group_size == 0
        )
        count += ok
        return ok

    nn.quantize(module, group_size=group_size, bits=bits, class_predicate=eligible)
    return count
