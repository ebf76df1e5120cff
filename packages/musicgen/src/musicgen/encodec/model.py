"""EncodecModel: MusicGen's audio codec (codes <-> audio), loaded from transformers checkpoints."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from musicgen.encodec.config import EncodecConfig
from musicgen.encodec.quantizer import ResidualVectorQuantizer
from musicgen.encodec.seanet import EncodecDecoder, EncodecEncoder
from musicgen.encodec.streaming import StreamingDecoder
from musicgen.errors import CheckpointError, InvalidArgumentError

_WEIGHT_NORM = {
    ".parametrizations.weight.original0": ".weight_g",
    ".parametrizations.weight.original1": ".weight_v",
}
_LSTM_KEY = re.compile(r"^(.*\.lstm)\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
_CODEBOOK_BUFFERS = ("embed_avg", "cluster_size", "inited")


class EncodecModel(nn.Module):
    """EnCodec as MusicGen uses it: whole clips, no loudness normalization.

    `decode(codes)` maps (batch, codebooks, frames) int32 to (batch, channels, frames * hop_length)
    float32 audio; `encode(audio)` is its inverse with `num_codebooks` codebooks: by default
    those of the first target bandwidth, as transformers' MusicGen calls it, or as many as a
    MusicGen decoder predicts (audiocraft's `set_num_codebooks`: a codec may store more than
    its LM uses). Layout is channels-last inside; the transposes happen here only.
    """

    def __init__(self, config: EncodecConfig, num_codebooks: int | None = None):
        super().__init__()
        self.config = config
        if num_codebooks is None:
            num_codebooks = config.codebooks_for_bandwidth(None)
        if not 1 <= num_codebooks <= config.num_quantizers:
            raise InvalidArgumentError(
                f"num_codebooks must be between 1 and the {config.num_quantizers} codebooks "
                f"this codec stores, got {num_codebooks}."
            )
        self._num_codebooks = num_codebooks
        self.encoder = EncodecEncoder(config)
        self.decoder = EncodecDecoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self._encoder_source: Callable[[], dict[str, mx.array]] | None = None
        self._encoder_lock = threading.Lock()

    def defer_encoder(self, source: Callable[[], dict[str, mx.array]]) -> None:
        """Drop the encoder's weights until `encode` first needs them; then `source()` gives them.

        Text-to-music only decodes, and the encoder is half the codec. `source` returns the
        encoder's tensors under our names without the "encoder." prefix (as `sanitize` makes
        them); it may raise a CheckpointError, e.g. when the checkpoint files have since gone.
        """
        with self._encoder_lock:
            self._encoder_source = source
            if "encoder" in self:
                del self["encoder"]

    @property
    def encoder_loaded(self) -> bool:
        """False while `defer_encoder` keeps the encoder's weights out of memory."""
        return "encoder" in self

    def load_encoder(self) -> EncodecEncoder:
        """The encoder, reading its deferred weights on first use (once, across threads)."""
        with self._encoder_lock:
            if "encoder" not in self:
                encoder = EncodecEncoder(self.config)
                encoder.load_weights(list(self._encoder_source().items()), strict=True)
                mx.eval(encoder.parameters())
                self.encoder = encoder
                self._encoder_source = None
            return self["encoder"]

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> int:
        return self.config.frame_rate

    @property
    def audio_channels(self) -> int:
        return self.config.audio_channels

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame that `encode` produces and MusicGen's LM predicts (per channel)."""
        return self._num_codebooks

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Map transformers' EnCodec tensors (keys without the "audio_encoder." prefix) to ours.

        Weight norm, stored as `weight_g`/`weight_v` (older transformers, the hub files) or as
        `parametrizations.weight.original0/1` (current transformers), is folded into a plain
        weight, computed in float32 and stored in the checkpoint's dtype (cast to float32 before
        sanitizing to keep full precision). Conv weights get MLX's channels-last layout;
        the two LSTM biases are summed; codebook training buffers are dropped.
        """
        weights = dict(weights)
        for key in list(weights):
            for old, new in _WEIGHT_NORM.items():
                if key.endswith(old):
                    weights[key[: -len(old)] + new] = weights.pop(key)

        out: dict[str, mx.array] = {}
        for key, value in weights.items():
            if key.endswith(".weight_g"):
                if key[: -len("_g")] + "_v" not in weights:
                    raise CheckpointError(f"EnCodec weights: '{key}' has no matching weight_v.")
                continue
            if key.endswith(".weight_v"):
                prefix = key[: -len(".weight_v")]
                g = weights.get(prefix + ".weight_g")
                if g is None:
                    raise CheckpointError(f"EnCodec weights: '{key}' has no matching weight_g.")
                out[prefix + ".weight"] = _fold_weight_norm(g, value)
                continue
            match = _LSTM_KEY.match(key)
            if match:
                prefix, kind, layer = match.groups()
                if kind == "weight_ih":
                    out[f"{prefix}.{layer}.Wx"] = value
                elif kind == "weight_hh":
                    out[f"{prefix}.{layer}.Wh"] = value
                elif kind == "bias_ih":
                    other = weights.get(f"{prefix}.bias_hh_l{layer}")
                    if other is None:
                        raise CheckpointError(f"EnCodec weights: '{key}' has no matching bias_hh.")
                    out[f"{prefix}.{layer}.bias"] = value + other
                continue
            if key.startswith("quantizer.") and ".codebook." in key:
                if key.rsplit(".", 1)[1] not in _CODEBOOK_BUFFERS:
                    out[key.replace(".codebook.", ".")] = value
                continue
            out[key] = value

        # Conv (out, in, kernel) -> (out, kernel, in); transposed (in, out, k) -> (in, k, out).
        for key, value in out.items():
            if key.endswith("conv.weight") and value.ndim == 3:
                out[key] = value.swapaxes(1, 2)
        return out

    def decode(self, codes: mx.array) -> mx.array:
        """Codes (batch, codebooks, frames) -> audio (batch, channels, frames * hop_length).

        Evaluated layer by layer (`run_layers`): the activations of one layer at a time.
        """
        codes = self.check_codes(codes)
        audio = self.decoder(self.quantizer.decode(codes), stepwise=True)
        return audio.transpose(0, 2, 1).astype(mx.float32)

    def encode(self, audio: mx.array, bandwidth: float | None = None) -> mx.array:
        """Audio (batch, audio_channels, samples) at `sampling_rate` -> codes (batch, K, frames).

        frames = ceil(samples / hop_length); K = `num_codebooks` unless `bandwidth` (kbps, one of
        the config's target_bandwidths) asks for another count.
        """
        num_codebooks = self.num_codebooks
        if bandwidth is not None:
            num_codebooks = self.config.codebooks_for_bandwidth(bandwidth)
        audio = self._check_audio(audio)
        encoder = self.load_encoder()
        dtype = encoder.layers[0].conv.weight.dtype
        embeddings = encoder(audio.transpose(0, 2, 1).astype(dtype))
        return self.quantizer.encode(embeddings, num_codebooks)

    def stream_decoder(self) -> StreamingDecoder:
        """A decoder that takes codes a few frames at a time (see StreamingDecoder)."""
        return StreamingDecoder(self.config, self.quantizer, self.decoder)

    def check_codes(self, codes: mx.array) -> mx.array:
        """Validate codes for `decode`; return them as int32."""
        return self.quantizer.check_codes(codes)

    def _check_audio(self, audio: mx.array) -> mx.array:
        if not isinstance(audio, mx.array):
            audio = mx.array(np.asarray(audio))
        usage = (
            f"pass float audio shaped (batch, {self.audio_channels}, samples) "
            f"at {self.sampling_rate} Hz"
        )
        if audio.ndim != 3 or audio.shape[0] == 0:
            raise InvalidArgumentError(f"audio has shape {tuple(audio.shape)}; {usage}.")
        if audio.shape[1] != self.audio_channels:
            raise InvalidArgumentError(
                f"audio has {audio.shape[1]} channels but this codec takes "
                f"{self.audio_channels}; {usage}."
            )
        if audio.shape[2] == 0:
            raise InvalidArgumentError(f"audio is empty (0 samples); {usage}.")
        if not mx.issubdtype(audio.dtype, mx.floating):
            raise InvalidArgumentError(f"audio has dtype {audio.dtype}; {usage}.")
        return audio


def _fold_weight_norm(g: mx.array, v: mx.array) -> mx.array:
    """weight = g * v / |v|, the norm over every axis but the first (PyTorch's dim=0)."""
    v32 = v.astype(mx.float32)
    norm = mx.sqrt(mx.sum(v32 * v32, axis=tuple(range(1, v.ndim)), keepdims=True))
    return (v32 * (g.astype(mx.float32) / norm)).astype(v.dtype)
