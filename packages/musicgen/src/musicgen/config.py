"""The configuration of a transformers-format MusicGen checkpoint, read from its config.json.

Defaults are transformers' own, so a config.json that leaves a field out means the same here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from rag_core import gelu_rational

from musicgen.errors import CheckpointError


def gelu(x: mx.array) -> mx.array:
    """GELU in the exact (erf) form: on the CPU ``rag_core.gelu_rational`` (MLX's CPU erf runs
    one element at a time: musicgen-small's step 72.7-72.8 ms against 75.9-77.0 ms with
    ``nn.gelu``, docs/performance.md), elsewhere ``nn.gelu``. The CUDA kernels know it as the
    exact GELU."""
    if mx.default_device() == mx.cpu:
        return gelu_rational(x)
    return nn.gelu(x)


ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "silu": nn.silu,
}


def activation(name: str, where: str = "config.json") -> Any:
    """The MLX function for a transformers activation name."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise CheckpointError(
            f"{where}: unsupported activation '{name}' (supported: {', '.join(ACTIVATIONS)})."
        ) from None


def _from_dict(cls, values: dict, where: str):
    """Build a config dataclass from the known keys of ``values``; type-check the numbers."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{where} must be a JSON object, got {type(values).__name__}.")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if f.type in ("int", "float") and not is_number:
            raise CheckpointError(f"{where}.{f.name} must be a number, got {value!r}.")
        kwargs[f.name] = value
    return cls(**kwargs)


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise CheckpointError(f"{where}: {message}")


@dataclass(frozen=True)
class T5Config:
    """The text encoder (the encoder half of T5)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name

    @classmethod
    def from_dict(cls, values: dict, where: str = "config.json text_encoder") -> T5Config:
        config = _from_dict(cls, values, where)
        model_type = values.get("model_type", "t5")
        _require(model_type == "t5", where, f"model_type is '{model_type}'; only T5 is supported.")
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"):
            _require(getattr(config, name) > 0, where, f"{name} must be positive.")
        activation(config.activation, where)
        return config


@dataclass(frozen=True)
class DecoderConfig:
    """The MusicGen language model over EnCodec codes."""

    vocab_size: int = 2048
    max_position_embeddings: int = 2048
    num_hidden_layers: int = 24
    ffn_dim: int = 4096
    num_attention_heads: int = 16
    hidden_size: int = 1024
    activation_function: str = "gelu"
    scale_embedding: bool = False
    num_codebooks: int = 4
    audio_channels: int = 1
    pad_token_id: int | None = 2048
    bos_token_id: int | None = 2048
    cross_attention_hidden_size: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def special_token_id(self) -> int:
        """The token that starts each codebook and pads the delay pattern (2048 in real models)."""
        return self.bos_token_id if self.bos_token_id is not None else self.pad_token_id

    @classmethod
    def from_dict(cls, values: dict, where: str = "config.json decoder") -> DecoderConfig:
        config = _from_dict(cls, values, where)
        sizes = ("vocab_size", "num_hidden_layers", "ffn_dim", "num_attention_heads", "hidden_size")
        for name in sizes:
            _require(getattr(config, name) > 0, where, f"{name} must be positive.")
        _require(
            config.hidden_size % config.num_attention_heads == 0,
            where,
            f"hidden_size {config.hidden_size} is not divisible by num_attention_heads "
            f"{config.num_attention_heads}.",
        )
        _require(
            config.audio_channels in (1, 2),
            where,
            f"audio_channels must be 1 (mono) or 2 (stereo), got {config.audio_channels}.",
        )
        _require(
            config.num_codebooks > 0 and config.num_codebooks % config.audio_channels == 0,
            where,
            f"num_codebooks {config.num_codebooks} must be a positive multiple of audio_channels.",
        )
        token = config.special_token_id
        _require(
            token is not None and 0 <= token <= config.vocab_size,
            where,
            f"bos_token_id/pad_token_id must index the {config.vocab_size + 1} code embeddings, "
            f"got {token}.",
        )
        activation(config.activation_function, where)
        return config


@dataclass(frozen=True)
class MusicGenConfig:
    """The three sub-configs of a ``model_type: musicgen`` (or ``musicgen_melody``) checkpoint.

    MusicGen-Melody adds ``num_chroma`` and ``chroma_length`` (the melody frames it reads).
    """

    text_encoder: T5Config
    decoder: DecoderConfig
    audio_encoder: dict = field(default_factory=dict)  # read by musicgen.encodec.EncodecConfig
    model_type: str = "musicgen"
    num_chroma: int = 12
    chroma_length: int = 235

    @classmethod
    def from_dict(cls, values: dict, where: str = "config.json") -> MusicGenConfig:
        if not isinstance(values, dict):
            raise CheckpointError(f"{where} must hold a JSON object.")
        model_type = values.get("model_type")
        if model_type not in MODEL_TYPES:
            raise CheckpointError(
                f"{where}: model_type is {model_type!r}, expected 'musicgen' or 'musicgen_melody' "
                "(a transformers-format repo such as facebook/musicgen-small)."
            )
        for section in ("text_encoder", "audio_encoder", "decoder"):
            if not isinstance(values.get(section), dict):
                raise CheckpointError(f"{where}: the '{section}' section is missing.")
        text = T5Config.from_dict(values["text_encoder"], f"{where} text_encoder")
        decoder = DecoderConfig.from_dict(values["decoder"], f"{where} decoder")
        cross = decoder.cross_attention_hidden_size
        _require(
            cross is None or cross == text.d_model,
            where,
            f"decoder.cross_attention_hidden_size {cross} differs from text_encoder.d_model "
            f"{text.d_model}.",
        )
        melody = {}
        if model_type == "musicgen_melody":
            melody = _from_dict(_MelodyFields, values, where).__dict__
            for name, value in melody.items():
                _require(value > 0, where, f"{name} must be positive.")
        return cls(
            text_encoder=text,
            decoder=decoder,
            audio_encoder=dict(values["audio_encoder"]),
            model_type=model_type,
            **melody,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> MusicGenConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(
                f"{path} is missing: a MusicGen checkpoint directory needs its config.json."
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(values, where=str(path))

    @property
    def is_melody(self) -> bool:
        """MusicGen-Melody: conditioning prepended to the decoder input, no cross-attention."""
        return self.model_type == "musicgen_melody"

    @property
    def projects_text(self) -> bool:
        """Whether the checkpoint has ``enc_to_dec_proj`` (text and decoder widths differ)."""
        return (
            self.text_encoder.d_model != self.decoder.hidden_size
            and self.decoder.cross_attention_hidden_size is None
        )


MODEL_TYPES = ("musicgen", "musicgen_melody")


@dataclass
class _MelodyFields:
    num_chroma: int = 12
    chroma_length: int = 235


def dtype_from_name(name: str | mx.Dtype) -> mx.Dtype:
    """'float32' | 'float16' | 'bfloat16' (or an mx.Dtype) -> mx.Dtype."""
    from musicgen.errors import InvalidArgumentError

    if isinstance(name, mx.Dtype):
        name = str(name).removeprefix("mlx.core.")
    dtypes = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
    if name not in dtypes:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(dtypes)}, got {name!r}.")
    return dtypes[name]


__all__ = [
    "DecoderConfig",
    "MusicGenConfig",
    "T5Config",
    "activation",
    "dtype_from_name",
]
