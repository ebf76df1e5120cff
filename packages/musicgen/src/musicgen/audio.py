"""Writing generated audio to wav, flac or ogg files with soundfile."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from rag_core import mark_phase

from musicgen.errors import AudioError, InvalidArgumentError

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
NORMALIZE_MODES = ("loudness", "peak", "rms", "clip", "none")
DEFAULT_NORMALIZE = "loudness"  # the same perceived level for every track (docs/musicgen.md)
PEAK_DBFS = -1.0  # headroom left by "peak"
RMS_DBFS = -20.0  # loudness target of "rms"


def save_audio(
    path: str | os.PathLike,
    audio,
    sample_rate: int,
    *,
    normalize: str | None = DEFAULT_NORMALIZE,
    format: str | None = None,
) -> Path:
    """Write ``audio`` ((channels, samples) or (samples,), mx or numpy) to ``path``.

    The format follows the suffix (or ``format``, e.g. ".wav", for a path without one, such as
    a temporary file): .wav and .flac (16-bit PCM) or .ogg (Vorbis).
    ``normalize``: "loudness" scales to -14 LUFS integrated loudness (ITU-R BS.1770), less
    where the true peak would pass -1 dBTP (musicgen.loudness); "peak" scales the loudest
    sample to -1 dBFS; "rms" scales to -20 dBFS RMS and clips; "clip" only clips to [-1, 1];
    "none" (or None) writes the samples as they are, which clips anything beyond [-1, 1].
    Silence is never scaled up. Returns the path written.
    """
    path = Path(path)
    suffix = (format or path.suffix).lower()
    if suffix not in FORMATS:
        raise InvalidArgumentError(
            f"cannot write '{path.name}': use a .wav, .flac or .ogg file name."
        )
    mode = "none" if normalize is None else normalize
    if mode not in NORMALIZE_MODES:
        raise InvalidArgumentError(
            f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {normalize!r}."
        )
    integer = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
    if not integer or sample_rate <= 0:
        raise InvalidArgumentError(f"sample_rate must be a positive integer, got {sample_rate!r}.")
    samples = _as_samples(audio)
    samples = _normalize(samples, mode, int(sample_rate))
    mark_phase("normalize")
    import soundfile as sf

    container, subtype = FORMATS[suffix]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples, int(sample_rate), format=container, subtype=subtype)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"could not write {path}: {exc}") from None
    mark_phase("write audio")
    return path


def _as_samples(audio) -> np.ndarray:
    """(channels, samples) or (samples,) -> float32 (samples, channels) for soundfile."""
    try:
        samples = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"audio must be an array of samples: {exc}") from None
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2 or samples.shape[0] not in (1, 2) or samples.shape[1] == 0:
        raise InvalidArgumentError(
            f"audio must have shape (channels, samples) with 1 or 2 channels, got "
            f"{samples.shape}; pass one item of a batch, e.g. audio[0]."
        )
    if not np.isfinite(samples).all():
        raise InvalidArgumentError("audio contains NaN or infinite samples.")
    return samples.T


def _normalize(samples: np.ndarray, mode: str, sample_rate: int) -> np.ndarray:
    if mode == "loudness":
        from musicgen.loudness import normalize_loudness

        samples, _ = normalize_loudness(samples, sample_rate)
    elif mode == "peak":
        peak = float(np.abs(samples).max())
        if peak > 0:
            samples = samples * (10 ** (PEAK_DBFS / 20) / peak)
    elif mode == "rms":
        rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
        if rms > 0:
            samples = samples * (10 ** (RMS_DBFS / 20) / rms)
    if mode != "none":
        samples = np.clip(samples, -1.0, 1.0)
    return samples.astype(np.float32)
