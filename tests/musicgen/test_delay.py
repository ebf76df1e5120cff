"""The delay pattern against transformers' build_delay_pattern_mask, mono and stereo."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from musicgen.delay import (
    apply_delay,
    codebook_delays,
    num_steps,
    special_token_mask,
    undo_delay,
)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("frames", [3, 10])
def test_special_positions_match_transformers(channels, frames, tiny_reference, stereo_reference):
    decoder = (tiny_reference if channels == 1 else stereo_reference).decoder
    K = decoder.num_codebooks
    delays = codebook_delays(K, channels)
    length = 1 + num_steps(frames, delays)
    start = torch.full((2 * K, 1), 32)
    _, pattern = decoder.build_delay_pattern_mask(start, pad_token_id=32, max_length=length)
    expected = (pattern.reshape(2, K, length)[0] != -1).numpy()
    assert np.array_equal(np.array(special_token_mask(frames, delays)), expected)


@pytest.mark.parametrize("channels", [1, 2])
def test_apply_then_undo_is_identity(channels):
    K, frames = 4 * channels, 7
    delays = codebook_delays(K, channels)
    codes = mx.random.randint(0, 2048, (2, K, frames), key=mx.random.key(0)).astype(mx.int32)
    sequence = apply_delay(codes, delays, 2048)
    assert sequence.shape == (2, K, 1 + num_steps(frames, delays))
    special = np.array(special_token_mask(frames, delays))
    assert np.all(np.array(sequence)[:, special] == 2048)
    assert np.all(np.array(sequence)[:, ~special] < 2048)
    assert np.array_equal(np.array(undo_delay(sequence, delays, frames)), np.array(codes))
