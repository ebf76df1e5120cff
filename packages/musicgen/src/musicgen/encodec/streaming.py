"""Streaming EnCodec decoding: codes in a few frames at a time, audio out as it becomes final.

The decoder is `conv_in -> LSTM -> upsampling stack`. The LSTM is causal, so its state is carried
from one push to the next. The convolutions are not (encodec_32khz pads them on both sides, and
reflect padding at the clip start reads a few frames ahead), so each part is run on a window of
frames with `context` frames of overlap on each side and the edges, which see window padding
instead of real neighbours, are cropped away:

* `conv_in` needs `in_context` = max(left pad, right pad) frames (3 for kernel 7);
* the upsampling stack needs `post_context` frames, walked back through its layers from the
  last conv's few samples (1 for encodec_32khz: the padding of every later layer fits in the
  overlap of the first transposed conv, which reaches one frame to each side).

So audio for frame t comes out once frame t + `latency` (= in_context + post_context, 4 frames
or 80 ms for encodec_32khz) has been pushed, and every frame is recomputed at most
2 * context times. Concatenating every `push` and the final `flush` gives `EncodecModel.decode`
of all codes, up to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlx.core as mx
import mlx.nn as nn

from musicgen.encodec.config import EncodecConfig
from musicgen.encodec.conv import EncodecConv1d, EncodecConvTranspose1d
from musicgen.encodec.quantizer import ResidualVectorQuantizer
from musicgen.encodec.seanet import EncodecDecoder, EncodecResnetBlock, run_layers
from musicgen.errors import InvalidArgumentError

if TYPE_CHECKING:
    from musicgen.encodec.lstm import LSTMState


def upsampling_context(layers: list[nn.Module]) -> int:
    """Frames of context on each side that `layers` (the decoder after its LSTM) need for
    outputs identical to a run over the whole clip."""
    left = right = 0  # in steps of the current layer's output
    for layer in reversed(layers):
        if isinstance(layer, EncodecConv1d):
            left, right = left + layer.pad_left, right + layer.pad_right
        elif isinstance(layer, EncodecResnetBlock):
            for conv in layer.block[1::2]:
                left, right = left + conv.pad_left, right + conv.pad_right
        elif isinstance(layer, EncodecConvTranspose1d):
            s, k, trim = layer.stride, layer.kernel_size, layer.trim_left
            left = max(0, (left + k - 1 - trim) // s)
            right = -(-(right + trim) // s)
    # Reflect padding at the clip start reads `left` steps ahead, so look ahead as far.
    return max(left, right)


class StreamingDecoder:
    """Decode codes pushed in pieces; see the module docstring for the overlap it keeps.

    Usage: `chunks = [dec.push(c) for c in pieces] + [dec.flush()]`; every chunk is float32
    (batch, audio_channels, samples), possibly with 0 samples. `EncodecModel.stream_decoder()`
    builds one from the codec's parts.
    """

    def __init__(
        self, config: EncodecConfig, quantizer: ResidualVectorQuantizer, decoder: EncodecDecoder
    ):
        if config.norm_type == "time_group_norm":
            raise InvalidArgumentError(
                "streaming decode needs a codec without time_group_norm (it normalizes over the "
                "whole clip); use EncodecModel.decode instead."
            )
        self.config = config
        self.quantizer = quantizer
        conv_in, self._lstm, *self._upsample = decoder.layers
        self._conv_in = conv_in
        self.in_context = max(conv_in.pad_left, conv_in.pad_right)
        self.post_context = upsampling_context(self._upsample)
        self.latency = self.in_context + self.post_context
        self._embeddings: mx.array | None = None  # frames [_emb_start, _received)
        self._emb_start = 0
        self._received = 0
        self._hidden: mx.array | None = None  # LSTM outputs, frames [_hid_start, _lstm_done)
        self._hid_start = 0
        self._lstm_done = 0
        self._state: LSTMState | None = None
        self._emitted = 0
        self._batch: int | None = None
        self._finished = False

    @property
    def received(self) -> int:
        """Frames pushed so far (0: nothing to flush)."""
        return self._received

    def push(self, codes: mx.array) -> mx.array:
        """Add codes (batch, codebooks, frames); return the audio that is now final."""
        if self._finished:
            raise InvalidArgumentError("this stream was flushed; start a new stream_decoder().")
        if codes.ndim == 3 and codes.shape[2] == 0:
            return self._empty(codes.shape[0])
        codes = self.quantizer.check_codes(codes)
        if self._batch is not None and codes.shape[0] != self._batch:
            raise InvalidArgumentError(
                f"codes have batch size {codes.shape[0]} but this stream started with "
                f"{self._batch}; push codes of the same batch size."
            )
        self._batch = codes.shape[0]
        new = self.quantizer.decode(codes)
        self._embeddings = (
            new if self._embeddings is None else mx.concatenate([self._embeddings, new], axis=1)
        )
        self._received += codes.shape[2]
        return self._advance(final=False)

    def flush(self) -> mx.array:
        """End the stream; return the rest of the audio."""
        if self._finished:
            raise InvalidArgumentError("this stream was already flushed.")
        self._finished = True
        if self._received == 0:
            raise InvalidArgumentError("no codes were pushed; push (batch, codebooks, frames).")
        return self._advance(final=True)

    def _advance(self, final: bool) -> mx.array:
        ready = self._received if final else self._received - self.in_context
        if ready > self._lstm_done:
            start = max(0, self._lstm_done - self.in_context)
            window = self._embeddings[:, start - self._emb_start :]
            x = self._conv_in(window)[:, self._lstm_done - start : ready - start]
            x, self._state = self._lstm.stream(x, self._state)
            self._hidden = x if self._hidden is None else mx.concatenate([self._hidden, x], 1)
            self._lstm_done = ready
            keep = max(0, ready - self.in_context)
            self._embeddings = self._embeddings[:, keep - self._emb_start :]
            self._emb_start = keep

        end = self._lstm_done if final else self._lstm_done - self.post_context
        if end <= self._emitted:
            return self._empty(self._batch)
        start = max(0, self._emitted - self.post_context)
        x = run_layers(self._upsample, self._hidden[:, start - self._hid_start :], stepwise=True)
        hop = self.config.hop_length
        audio = x[:, (self._emitted - start) * hop : (end - start) * hop]
        self._emitted = end
        keep = max(0, end - self.post_context)
        self._hidden = self._hidden[:, keep - self._hid_start :]
        self._hid_start = keep
        return audio.transpose(0, 2, 1).astype(mx.float32)

    def _empty(self, batch: int | None) -> mx.array:
        return mx.zeros((batch or 0, self.config.audio_channels, 0), dtype=mx.float32)
