"""Random EnCodec checkpoints written by transformers, and helpers to load them both ways.

Test-only: torch and transformers are the reference implementation here, never a runtime need.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch
from musicgen.encodec import EncodecConfig, EncodecModel
from safetensors.torch import load_file, save_file
from transformers import EncodecConfig as HFEncodecConfig
from transformers import EncodecModel as HFEncodecModel

# facebook/encodec_32khz as stored in facebook/musicgen-* config.json ("audio_encoder").
ENCODEC_32KHZ = {
    "model_type": "encodec",
    "architectures": ["EncodecModel"],
    "audio_channels": 1,
    "chunk_length_s": None,
    "codebook_dim": 128,
    "codebook_size": 2048,
    "compress": 2,
    "dilation_growth_rate": 2,
    "hidden_size": 128,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "norm_type": "weight_norm",
    "normalize": False,
    "num_filters": 64,
    "num_lstm_layers": 2,
    "num_residual_layers": 1,
    "overlap": None,
    "pad_mode": "reflect",
    "residual_kernel_size": 3,
    "sampling_rate": 32000,
    "target_bandwidths": [2.2],
    "trim_right_ratio": 1.0,
    "upsampling_ratios": [8, 5, 4, 4],
    "use_causal_conv": False,
    "use_conv_shortcut": False,
}

# Small variants: frame rate 100 with 16-entry codebooks gives 4 codebooks at 1.6 kbps.
_TINY = {
    "sampling_rate": 800,
    "target_bandwidths": [1.6],
    "codebook_size": 16,
    "hidden_size": 8,
    "num_filters": 4,
    "upsampling_ratios": [4, 2],
    "use_causal_conv": False,
    "use_conv_shortcut": False,
}
TINY_CONFIGS = {
    # encodec_32khz's options at a small size.
    "tiny": dict(_TINY),
    # Causal convs, conv shortcuts, odd ratios, stereo, a wider bottleneck, 2 residual layers.
    "tiny-causal": dict(
        _TINY,
        use_causal_conv=True,
        trim_right_ratio=0.5,
        use_conv_shortcut=True,
        upsampling_ratios=[3, 2],
        sampling_rate=600,
        audio_channels=2,
        compress=1,
        num_residual_layers=2,
        num_lstm_layers=1,
    ),
    # Group norm instead of weight norm, replicate padding, 2 bandwidths (2 or 4 codebooks).
    "tiny-groupnorm": dict(
        _TINY, norm_type="time_group_norm", pad_mode="replicate", target_bandwidths=[0.8, 1.6]
    ),
}


def write_checkpoint(path: Path, config: dict, seed: int = 0) -> HFEncodecModel:
    """Save a transformers EncodecModel with random weights (codebooks and weight-norm gains
    included, which transformers initializes to zeros and |v|) to `path`; return the model."""
    torch.manual_seed(seed)
    model = HFEncodecModel(HFEncodecConfig(**config)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("original0"):  # weight-norm gain g, not just |v|
                param.mul_(torch.empty_like(param).uniform_(0.5, 1.5))
            elif name.endswith("bias") and param.ndim == 1:
                param.uniform_(-0.1, 0.1)
        if config.get("norm_type") == "time_group_norm":
            for module in model.modules():
                if isinstance(module, torch.nn.GroupNorm):
                    module.weight.uniform_(0.5, 1.5)
        # Codebooks at the scale of the encoder output, so codes are spread over the entries.
        audio = torch.randn(2, model.config.audio_channels, 8 * model.config.hop_length)
        scale = model.encoder(audio).std().item()
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, scale)
    model.save_pretrained(path)
    return model


def legacy_copy(src: Path, dst: Path) -> Path:
    """Copy a checkpoint with weight norm named `weight_g`/`weight_v`, as the hub files are."""
    dst.mkdir(parents=True, exist_ok=True)
    tensors = load_file(src / "model.safetensors")
    renamed = {
        key.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"
        ): value
        for key, value in tensors.items()
    }
    assert any(k.endswith(".weight_g") for k in renamed) or not any(
        k.endswith("original0") for k in tensors
    )
    save_file(renamed, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def float16_copy(src: Path, dst: Path) -> Path:
    """Copy a checkpoint with every tensor stored as float16."""
    dst.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.half() for k, v in load_file(src / "model.safetensors").items()}
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def load_mlx(path: Path, dtype: mx.Dtype | None = None) -> EncodecModel:
    """Load a checkpoint directory the way MusicGen's loader does: config, cast, sanitize, load."""
    import json

    config = EncodecConfig.from_dict(json.loads((path / "config.json").read_text()))
    weights = mx.load(str(path / "model.safetensors"))
    if dtype is not None:
        weights = {k: v.astype(dtype) for k, v in weights.items()}
    model = EncodecModel(config)
    model.load_weights(list(EncodecModel.sanitize(weights).items()))
    mx.eval(model.parameters())
    return model


def load_reference(path: Path) -> HFEncodecModel:
    """transformers' EncodecModel from the same directory, in float32."""
    return HFEncodecModel.from_pretrained(path, dtype=torch.float32).eval()


def random_codes(model: HFEncodecModel, batch: int, frames: int, seed: int) -> np.ndarray:
    """Codes (batch, codebooks, frames) for the codec's default bandwidth."""
    config = model.config
    per_codebook = math.log2(config.codebook_size) * config.frame_rate
    k = int(max(1, math.floor(config.target_bandwidths[0] * 1000 / per_codebook)))
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.codebook_size, size=(batch, k, frames), dtype=np.int64)


def reference_decode(model: HFEncodecModel, codes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        audio = model.decode(torch.from_numpy(codes)[None], [None]).audio_values
    return audio.numpy()


def reference_encode(model: HFEncodecModel, audio: np.ndarray, bandwidth=None):
    """transformers' codes (batch, K, frames), and the smallest gap between the best and the
    second-best codebook entry over every choice made, relative to the largest distance."""
    gaps = []
    for layer in model.quantizer.layers:
        codebook = layer.codebook

        def quantize(x, codebook=codebook):
            embed = codebook.embed.t()
            dist = -(
                x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True)
            )
            top = dist.topk(2, dim=-1).values
            gaps.append(((top[:, 0] - top[:, 1]) / dist.abs().max()).min().item())
            return dist.max(dim=-1).indices

        codebook.quantize = quantize  # instance attribute shadows the method
    try:
        with torch.no_grad():
            out = model.encode(torch.from_numpy(audio), bandwidth=bandwidth)
    finally:
        for layer in model.quantizer.layers:
            del layer.codebook.quantize
    return out.audio_codes[0].numpy(), min(gaps)
