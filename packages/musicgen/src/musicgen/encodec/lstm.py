"""EnCodec's LSTM: stacked unidirectional layers with a skip connection around them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

LSTMState = list[tuple[mx.array, mx.array]]  # (hidden, cell) of each layer, each (N, dim)


class EncodecLSTM(nn.Module):
    """`lstm(x) + x` on NLC input; mlx.nn.LSTM's gate order (i, f, g, o) is PyTorch's."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = [nn.LSTM(dim, dim) for _ in range(num_layers)]

    def __call__(self, x: mx.array) -> mx.array:
        return self.stream(x)[0]

    def stream(self, x: mx.array, state: LSTMState | None = None) -> tuple[mx.array, LSTMState]:
        """Run on `x` (N, L, dim) from `state` (None: zeros); return the output and end state."""
        hidden = x
        end_state = []
        for i, layer in enumerate(self.lstm):
            h0, c0 = state[i] if state is not None else (None, None)
            hidden, cells = layer(hidden, hidden=h0, cell=c0)
            end_state.append((hidden[:, -1], cells[:, -1]))
        return hidden + x, end_state
