"""EnCodec's configuration: transformers' EncodecConfig fields, with transformers' defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from musicgen.errors import CheckpointError, InvalidArgumentError

PAD_MODES = ("reflect", "constant", "replicate")
NORM_TYPES = ("weight_norm", "time_group_norm")


@dataclass
class EncodecConfig:
    """The `audio_encoder` section of a MusicGen config.json (facebook/encodec_32khz and kin).

    A field left out of the dict keeps transformers' default, so it means the same thing here.
    """

    target_bandwidths: list[float] = dataclasses.field(
        default_factory=lambda: [1.5, 3.0, 6.0, 12.0, 24.0]
    )
    sampling_rate: int = 24_000
    audio_channels: int = 1
    normalize: bool = False
    chunk_length_s: float | None = None
    overlap: float | None = None
    hidden_size: int = 128
    num_filters: int = 32
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = dataclasses.field(default_factory=lambda: [8, 5, 4, 2])
    norm_type: str = "weight_norm"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "reflect"
    compress: int = 2
    num_lstm_layers: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 1024
    codebook_dim: int | None = None
    use_conv_shortcut: bool = True

    def __post_init__(self) -> None:
        if self.codebook_dim is None:
            self.codebook_dim = self.hidden_size
        self.target_bandwidths = [float(b) for b in self.target_bandwidths]
        self.upsampling_ratios = [int(r) for r in self.upsampling_ratios]
        self._validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncodecConfig:
        """Build from a transformers EncodecConfig dict; keys that are not fields are ignored."""
        if not isinstance(values, dict):
            raise CheckpointError(
                f"EnCodec config must be a dict (config.json's 'audio_encoder'), "
                f"got {type(values).__name__}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame."""
        return math.prod(self.upsampling_ratios)

    @property
    def frame_rate(self) -> int:
        """Code frames per second (rounded up, as transformers does)."""
        return math.ceil(self.sampling_rate / self.hop_length)

    @property
    def codebook_nbits(self) -> int:
        return math.ceil(math.log2(self.codebook_size))

    @property
    def num_quantizers(self) -> int:
        """Codebooks stored in the checkpoint (enough for the largest target bandwidth)."""
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * self.codebook_nbits))

    def codebooks_for_bandwidth(self, bandwidth: float | None = None) -> int:
        """Codebooks `encode` uses at `bandwidth` (kbps); None means the first target bandwidth,
        which is what transformers' MusicGen uses (4 codebooks for encodec_32khz)."""
        if bandwidth is None:
            bandwidth = self.target_bandwidths[0]
        if bandwidth not in self.target_bandwidths:
            raise InvalidArgumentError(
                f"bandwidth {bandwidth} is not supported by this codec; "
                f"pass one of {self.target_bandwidths} or None."
            )
        # The same float expression as transformers, so the rounding agrees.
        per_codebook = math.log2(self.codebook_size) * self.frame_rate
        if bandwidth <= 0.0:
            return self.num_quantizers
        return int(max(1, math.floor(bandwidth * 1000 / per_codebook)))

    def _validate(self) -> None:
        def bad(field: str, expected: str) -> CheckpointError:
            return CheckpointError(
                f"EnCodec config: '{field}' must be {expected}, got {getattr(self, field)!r}."
            )

        if self.norm_type not in NORM_TYPES:
            raise bad("norm_type", f"one of {NORM_TYPES}")
        if self.pad_mode not in PAD_MODES:
            raise bad("pad_mode", f"one of {PAD_MODES}")
        if not self.upsampling_ratios or min(self.upsampling_ratios) < 1:
            raise bad("upsampling_ratios", "a non-empty list of positive integers")
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            raise bad("codebook_size", "a power of 2")
        if not self.target_bandwidths or self.num_quantizers < 1:
            raise bad("target_bandwidths", "large enough for at least one codebook")
        if self.audio_channels not in (1, 2):
            raise bad("audio_channels", "1 or 2")
        if not self.use_causal_conv and self.trim_right_ratio != 1.0:
            raise bad("trim_right_ratio", "1.0 unless use_causal_conv is true")
        # Chunked coding (overlap-add of 1 s windows) and loudness normalization belong to
        # encodec_48khz; MusicGen's codec codes whole clips as they are.
        if self.normalize:
            raise bad("normalize", "false (MusicGen's codecs do not normalize audio)")
        if self.chunk_length_s is not None:
            raise bad("chunk_length_s", "null (MusicGen's codecs code whole clips)")
