"""EnCodec's LSTM: stacked unidirectional layers with a skip connection around them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from musicgen import kernels

LSTMState = list[tuple[mx.array, mx.array]]  # (hidden, cell) of each layer, each (N, dim)


@mx.compile
def _lstm_step(
    projected: mx.array, hidden: mx.array, cell: mx.array, recurrent: mx.array
) -> tuple[mx.array, mx.array]:
    """One time step: the gates (PyTorch's order i, f, g, o) from the projected input and the
    last hidden state, then the new hidden state and cell, as one fused kernel after the
    product."""
    gates = mx.addmm(projected, hidden, recurrent)
    i, f, g, o = mx.split(gates, 4, axis=-1)
    cell = mx.sigmoid(f) * cell + mx.sigmoid(i) * mx.tanh(g)
    return mx.sigmoid(o) * mx.tanh(cell), cell


def run_lstm(
    layer: nn.LSTM, x: mx.array, hidden: mx.array | None, cell: mx.array | None
) -> tuple[mx.array, mx.array, mx.array]:
    """``layer`` (mlx.nn.LSTM's weights) over ``x`` (N, L, dim) from ``hidden`` and ``cell``
    (None: zeros); returns every step's hidden state (N, L, dim) and the last hidden state and
    cell. The same arithmetic as ``nn.LSTM.__call__``, with each step's gate arithmetic
    compiled into one kernel: two launches a step instead of about ten. On CUDA one kernel runs
    every step (``musicgen.kernels.lstm_recurrence``)."""
    projected = mx.addmm(layer.bias, x, layer.Wx.T) if "bias" in layer else x @ layer.Wx.T
    size = layer.Wh.shape[1]
    zeros = mx.zeros((x.shape[0], size), projected.dtype)
    hidden = zeros if hidden is None else hidden
    cell = zeros if cell is None else cell
    if kernels.available() and kernels.lstm_fits(projected, layer.Wh):
        return kernels.lstm_recurrence(projected, hidden, cell, layer.Wh)
    recurrent = layer.Wh.T
    outputs = []
    for t in range(x.shape[1]):
        hidden, cell = _lstm_step(projected[:, t], hidden, cell, recurrent)
        outputs.append(hidden)
    return mx.stack(outputs, axis=1), hidden, cell


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
            hidden, last_hidden, last_cell = run_lstm(layer, hidden, h0, c0)
            end_state.append((last_hidden, last_cell))
        return hidden + x, end_state
