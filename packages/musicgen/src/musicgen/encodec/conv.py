"""EnCodec's padded convolutions (channels-last, NLC) with transformers' padding arithmetic."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from musicgen.encodec.config import EncodecConfig

_MX_PAD_MODES = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def pad1d(x: mx.array, left: int, right: int, mode: str) -> mx.array:
    """Pad the time axis of `x` (NLC).

    Reflect padding of an input no longer than the pad first appends zeros (then drops them),
    as transformers does, so that very short inputs give the same numbers.
    """
    if mode != "reflect":
        return mx.pad(x, [(0, 0), (left, right), (0, 0)], mode=_MX_PAD_MODES[mode])
    extra = max(left, right) - x.shape[1] + 1
    if extra > 0:
        x = mx.pad(x, [(0, 0), (0, extra), (0, 0)])
    x = mx.pad(x, [(0, 0), (left, right), (0, 0)], mode="reflect")
    return x[:, : x.shape[1] - extra] if extra > 0 else x


def conv1d(x: mx.array, weight: mx.array, stride: int = 1, dilation: int = 1) -> mx.array:
    """Conv of NLC `x` with `weight` (out, kernel, in), no padding; the same result as
    `mx.conv1d` up to float rounding, and on CUDA no cuDNN plan to set up per shape in a fresh
    process (docs/performance.md).

    Where all taps' outputs side by side are no wider than the input (EnCodec's 64 -> 1 output
    conv), one product makes them all and each tap's column is summed shifted by its offset:
    the input is read once (that conv of a 10 s decode took 9-18 ms on an H200 as a product per
    tap, 1.0-1.5 ms this way; 193 -> 54 ms for 256 rows). Elsewhere a product per tap (a
    strided view of the input times `weight[:, j]`, accumulated with `addmm`) keeps the working
    memory at the output's size. Like every float32 product on CUDA, these run in TF32 unless
    `MLX_ENABLE_TF32=0`.
    """
    out_channels, taps, in_channels = weight.shape
    frames = (x.shape[1] - (taps - 1) * dilation - 1) // stride + 1
    span = stride * (frames - 1) + 1
    out = None
    if taps * out_channels <= in_channels:
        columns = weight.transpose(1, 0, 2).reshape(taps * out_channels, in_channels).T
        products = (x @ columns).reshape(*x.shape[:2], taps, out_channels)
        for j in range(taps):
            part = products[:, j * dilation : j * dilation + span : stride, j]
            out = part if out is None else out + part
        return out
    for j in range(taps):
        seen, tap = x[:, j * dilation : j * dilation + span : stride], weight[:, j].T
        out = seen @ tap if out is None else mx.addmm(out, seen, tap)
    return out


def conv_transpose1d(x: mx.array, weight: mx.array, stride: int) -> mx.array:
    """Transposed conv of NLC `x` with `weight` (in, kernel, out): one matmul and an overlap-add.

    Same result as `mx.conv_transpose1d`, which dilates the input with zeros and so does about
    `stride` times the work (4x slower for EnCodec's kernel = 2 * stride).
    """
    in_channels, kernel, out_channels = weight.shape
    blocks = -(-kernel // stride)  # input frames that reach one output block of `stride` samples
    if blocks * stride != kernel:
        weight = mx.pad(weight, [(0, 0), (0, blocks * stride - kernel), (0, 0)])
    batch, length, _ = x.shape
    taps = (x @ weight.reshape(in_channels, -1)).reshape(batch, length, blocks, stride, -1)
    out = None
    for j in range(blocks):  # input frame n adds its tap block j to output block n + j
        part = mx.pad(taps[:, :, j], [(0, 0), (j, blocks - 1 - j), (0, 0), (0, 0)])
        out = part if out is None else out + part
    out = out.reshape(batch, (length + blocks - 1) * stride, out_channels)
    return out[:, : (length - 1) * stride + kernel]


class TransposedKernel(nn.Module):
    """A transposed conv's `weight` (in, kernel, out) and `bias` (out,).

    PyTorch stores (in, out, kernel): the same swap of the last two axes that turns a conv's
    (out, in, kernel) into MLX's (out, kernel, in), so one rule loads both.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        scale = 1 / math.sqrt(in_channels * kernel_size)
        self.weight = mx.random.uniform(-scale, scale, (in_channels, kernel_size, out_channels))
        self.bias = mx.zeros((out_channels,))


class EncodecConv1d(nn.Module):
    """Conv1d that pads its input so that `length` in gives `ceil(length / stride)` out.

    Non-causal: the fixed padding `kernel - stride` is split with the larger half on the left;
    causal: all of it on the left. Extra right padding completes the last stride.
    """

    def __init__(
        self,
        config: EncodecConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)  # its weight and bias
        if config.norm_type == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels, pytorch_compatible=True)
        self.stride, self.dilation = stride, dilation
        self.pad_mode = config.pad_mode
        padding_total = (kernel_size - 1) * dilation + 1 - stride
        self.pad_right = 0 if config.use_causal_conv else padding_total // 2
        self.pad_left = padding_total - self.pad_right

    def __call__(self, x: mx.array) -> mx.array:
        length = x.shape[1]
        extra = math.ceil(length / self.stride) * self.stride - length
        x = pad1d(x, self.pad_left, self.pad_right + extra, self.pad_mode)
        x = conv1d(x, self.conv.weight, self.stride, self.dilation) + self.conv.bias
        return self.norm(x) if "norm" in self else x


class EncodecConvTranspose1d(nn.Module):
    """ConvTranspose1d trimmed to exactly `length * stride` outputs.

    Non-causal: `kernel - stride` samples are trimmed, the larger half on the left; causal:
    `ceil(trim * trim_right_ratio)` of them on the right, the rest on the left.
    """

    def __init__(
        self,
        config: EncodecConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
    ):
        super().__init__()
        self.conv = TransposedKernel(in_channels, out_channels, kernel_size)
        if config.norm_type == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels, pytorch_compatible=True)
        self.stride = stride
        self.kernel_size = kernel_size
        padding_total = kernel_size - stride
        if config.use_causal_conv:
            self.trim_right = math.ceil(padding_total * config.trim_right_ratio)
        else:
            self.trim_right = padding_total // 2
        self.trim_left = padding_total - self.trim_right

    def __call__(self, x: mx.array) -> mx.array:
        x = conv_transpose1d(x, self.conv.weight, self.stride) + self.conv.bias
        if "norm" in self:
            x = self.norm(x)
        return x[:, self.trim_left : x.shape[1] - self.trim_right]
