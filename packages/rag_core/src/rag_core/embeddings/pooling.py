"""Sentence pooling and normalisation, configured like sentence-transformers.

`modules.json` lists the pipeline (Transformer -> Pooling -> optional Normalize) and
`<pooling dir>/config.json` chooses the pooling mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

MODES = ("mean", "cls", "max", "mean_sqrt_len", "lasttoken")


@dataclass(frozen=True)
class Pooling:
    mode: str = "mean"
    normalize: bool = False

    @classmethod
    def from_dir(cls, path: Path) -> Pooling:
        """Read the pooling mode and whether a Normalize module follows it.

        Without modules.json (a bare transformers checkpoint) use normalised mean pooling,
        the usual choice for retrieval.
        """
        modules_file = path / "modules.json"
        if not modules_file.exists():
            return cls(mode="mean", normalize=True)
        modules = json.loads(modules_file.read_text())
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        normalize = "Normalize" in kinds
        mode = "mean"
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                config_file = path / module.get("path", "") / "config.json"
                if config_file.exists():
                    mode = _mode_from_config(json.loads(config_file.read_text()))
        return cls(mode=mode, normalize=normalize)

    def __call__(self, hidden: mx.array, attention_mask: mx.array) -> mx.array:
        """Pool (B, L, D) hidden states over the unmasked tokens into (B, D) vectors."""
        mask = attention_mask.astype(hidden.dtype)[..., None]
        if self.mode == "cls":
            pooled = hidden[:, 0]
        elif self.mode == "lasttoken":
            last = attention_mask.astype(mx.int32).sum(axis=1) - 1
            pooled = mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
        elif self.mode == "max":
            pooled = mx.where(mask.astype(mx.bool_), hidden, -mx.inf).max(axis=1)
        else:
            counts = mx.maximum(mask.sum(axis=1), 1e-9)
            pooled = (hidden * mask).sum(axis=1)
            pooled = pooled / (mx.sqrt(counts) if self.mode == "mean_sqrt_len" else counts)
        if self.normalize:
            norm = mx.linalg.norm(pooled, axis=-1, keepdims=True)
            pooled = pooled / mx.maximum(norm, 1e-12)
        return pooled


# sentence-transformers' Pooling config keys, one boolean per mode.
CONFIG_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}


def _mode_from_config(config: dict) -> str:
    if "pooling_mode" in config:
        enabled = [config["pooling_mode"]]
    else:
        enabled = [mode for key, mode in CONFIG_KEYS.items() if config.get(key)]
    if len(enabled) > 1:
        raise ValueError(f"Concatenated pooling modes are not supported: {enabled}.")
    mode = enabled[0] if enabled else "mean"
    if mode not in MODES:
        raise ValueError(f"Pooling mode '{mode}' is not supported (supported: {', '.join(MODES)}).")
    return mode
