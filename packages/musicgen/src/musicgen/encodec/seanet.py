"""SEANet encoder and decoder of EnCodec (NLC layout).

Layer lists mirror transformers' `layers` indices (ELUs included), so checkpoint keys such as
`decoder.layers.4.block.1.conv.weight` name the same module here.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import mlx.nn as nn

from musicgen.encodec.config import EncodecConfig
from musicgen.encodec.conv import EncodecConv1d, EncodecConvTranspose1d
from musicgen.encodec.lstm import EncodecLSTM


class EncodecResnetBlock(nn.Module):
    """ELU, dilated conv down to `dim // compress`, ELU, 1x1 conv up; skip: 1x1 conv or identity."""

    def __init__(self, config: EncodecConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // config.compress
        self.block = [
            nn.ELU(),
            EncodecConv1d(config, dim, hidden, config.residual_kernel_size, dilation=dilation),
            nn.ELU(),
            EncodecConv1d(config, hidden, dim, kernel_size=1),
        ]
        if config.use_conv_shortcut:
            self.shortcut = EncodecConv1d(config, dim, dim, kernel_size=1)

    def __call__(self, x: mx.array) -> mx.array:
        residual = self.shortcut(x) if "shortcut" in self else x
        for layer in self.block:
            x = layer(x)
        return residual + x


class EncodecEncoder(nn.Module):
    """Audio (N, samples, channels) -> embeddings (N, frames, hidden_size)."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        width = config.num_filters
        layers = [EncodecConv1d(config, config.audio_channels, width, config.kernel_size)]
        for ratio in reversed(config.upsampling_ratios):
            layers += [
                EncodecResnetBlock(config, width, config.dilation_growth_rate**j)
                for j in range(config.num_residual_layers)
            ]
            layers += [nn.ELU(), EncodecConv1d(config, width, 2 * width, 2 * ratio, stride=ratio)]
            width *= 2
        layers += [
            EncodecLSTM(width, config.num_lstm_layers),
            nn.ELU(),
            EncodecConv1d(config, width, config.hidden_size, config.last_kernel_size),
        ]
        self.layers = layers

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x)
        return x


def run_layers(layers: Sequence[nn.Module], x: mx.array, stepwise: bool = False) -> mx.array:
    """`x` through `layers` in turn.

    `stepwise` evaluates each layer's output before the next layer is built: the same numbers,
    but the peak is one layer's working memory instead of the whole stack's graph (for 50
    frames of encodec_32khz 0.10 GB instead of 0.25 GB), at the price of a sync per layer.
    """
    for layer in layers:
        x = layer(x)
        if stepwise:
            mx.eval(x)
    return x


class EncodecDecoder(nn.Module):
    """Embeddings (N, frames, hidden_size) -> audio (N, frames * hop_length, channels).

    `layers[0]` (conv) and `layers[1]` (LSTM) run at the frame rate; the rest upsample.
    """

    def __init__(self, config: EncodecConfig):
        super().__init__()
        width = config.num_filters * 2 ** len(config.upsampling_ratios)
        layers = [
            EncodecConv1d(config, config.hidden_size, width, config.kernel_size),
            EncodecLSTM(width, config.num_lstm_layers),
        ]
        for ratio in config.upsampling_ratios:
            layers += [
                nn.ELU(),
                EncodecConvTranspose1d(config, width, width // 2, 2 * ratio, stride=ratio),
            ]
            width //= 2
            layers += [
                EncodecResnetBlock(config, width, config.dilation_growth_rate**j)
                for j in range(config.num_residual_layers)
            ]
        layers += [
            nn.ELU(),
            EncodecConv1d(config, width, config.audio_channels, config.last_kernel_size),
        ]
        self.layers = layers

    def __call__(self, x: mx.array, stepwise: bool = False) -> mx.array:
        return run_layers(self.layers, x, stepwise)
