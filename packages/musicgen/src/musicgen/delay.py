"""MusicGen's delay pattern: codebook k of a frame is predicted d_k steps after codebook 0.

Mono models delay codebook k by k; stereo models interleave left/right codebooks and delay
both codebooks of a pair alike (k // 2). Every codebook starts with the special token
(2048 in the real models) and is padded with it where the pattern leaves it empty.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def codebook_delays(num_codebooks: int, audio_channels: int = 1) -> list[int]:
    """Delay of each codebook in steps."""
    return [k // audio_channels for k in range(num_codebooks)]


def num_steps(num_frames: int, delays: list[int]) -> int:
    """Decoding steps needed for ``num_frames`` complete frames."""
    return num_frames + max(delays)


def special_token_mask(num_frames: int, delays: list[int]) -> mx.array:
    """(K, 1 + steps) bool: True where position p of codebook k holds the special token.

    Position 0 is the start token; codebook k carries frame f at position f + d_k + 1.
    """
    length = 1 + num_steps(num_frames, delays)
    positions = np.arange(length)[None, :]
    d = np.array(delays)[:, None]
    return mx.array((positions <= d) | (positions > num_frames + d))


def apply_delay(codes: mx.array, delays: list[int], special_token: int) -> mx.array:
    """(B, K, T) frames -> (B, K, 1 + T + max delay) delayed sequence with start and pad tokens."""
    B, _, T = codes.shape
    length = 1 + num_steps(T, delays)
    rows = [
        mx.concatenate(
            [
                mx.full((B, d + 1), special_token, codes.dtype),
                codes[:, k],
                mx.full((B, length - T - d - 1), special_token, codes.dtype),
            ],
            axis=1,
        )
        for k, d in enumerate(delays)
    ]
    return mx.stack(rows, axis=1)


def undo_delay(sequence: mx.array, delays: list[int], num_frames: int) -> mx.array:
    """(B, K, L) delayed sequence (position 0 = start token) -> (B, K, num_frames) frames."""
    return mx.stack(
        [sequence[:, k, d + 1 : d + 1 + num_frames] for k, d in enumerate(delays)], axis=1
    )
