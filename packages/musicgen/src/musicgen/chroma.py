"""MusicGen-Melody's melody features: the dominant pitch class of each STFT frame, one-hot.

The same computation as transformers' MusicgenMelodyFeatureExtractor, in numpy: clips are
truncated to ``chunk_length`` seconds and padded with silence to the longest of the batch, then
a power spectrogram (periodic Hann window, centred frames with reflect padding, normalised by
the window's energy) is projected onto librosa's chroma filter bank, and each frame keeps only
its strongest pitch class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from musicgen.errors import CheckpointError

PREPROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ChromaExtractor:
    """Settings of a checkpoint's preprocessor_config.json (transformers' defaults)."""

    sampling_rate: int = 32000
    n_fft: int = 16384
    hop_length: int = 4096
    num_chroma: int = 12
    chunk_length: int = 30  # seconds of melody kept
    padding_side: str = "right"

    @classmethod
    def from_dir(cls, path: Path) -> ChromaExtractor:
        """Read ``path/preprocessor_config.json`` if there is one; defaults otherwise."""
        file = path / PREPROCESSOR_FILE
        if not file.is_file():
            return cls()
        try:
            values = json.loads(file.read_text())
            names = {f.name for f in fields(cls)}
            extractor = cls(**{k: v for k, v in values.items() if k in names})
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{file} is not a valid preprocessor config: {exc}") from None
        for name in ("sampling_rate", "n_fft", "hop_length", "num_chroma", "chunk_length"):
            value = getattr(extractor, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise CheckpointError(f"{file}: {name} must be a positive integer, got {value!r}.")
        if extractor.padding_side not in ("left", "right"):
            raise CheckpointError(f"{file}: padding_side must be 'left' or 'right'.")
        return extractor

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        """Mono clips (samples,) at ``sampling_rate`` -> one-hot chroma (batch, frames, chroma)."""
        limit = self.chunk_length * self.sampling_rate
        clips = [np.asarray(c, np.float32)[:limit] for c in clips]
        length = max(len(c) for c in clips)
        padded = np.zeros((len(clips), length), np.float32)
        for i, clip in enumerate(clips):
            if self.padding_side == "right":
                padded[i, : len(clip)] = clip
            else:
                padded[i, length - len(clip) :] = clip
        energy = chroma_filter_bank(self.sampling_rate, self.n_fft, self.num_chroma) @ (
            self.power_spectrogram(padded)
        )
        # The reference normalises by the frame's maximum (at least 1e-6) before the argmax.
        energy = energy / np.maximum(np.abs(energy).max(axis=1, keepdims=True), 1e-6)
        strongest = energy.argmax(axis=1)  # (batch, frames)
        return np.eye(self.num_chroma, dtype=np.float32)[strongest]

    def power_spectrogram(self, audio: np.ndarray) -> np.ndarray:
        """(batch, samples) -> |STFT|^2 / sum(window^2): (batch, n_fft // 2 + 1, frames)."""
        n_fft, hop = self.n_fft, self.hop_length
        if audio.shape[1] < n_fft:  # too short for one window: centre it in silence
            extra = n_fft - audio.shape[1]
            audio = np.pad(audio, [(0, 0), (extra // 2, extra - extra // 2)])
        audio = np.pad(audio, [(0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
        window = np.hanning(n_fft + 1)[:-1]  # periodic
        frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft, axis=1)[:, ::hop]
        spectrum = np.fft.rfft(frames * window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        return (power / np.sum(window**2)).transpose(0, 2, 1)


def chroma_filter_bank(sampling_rate: int, n_fft: int, num_chroma: int = 12) -> np.ndarray:
    """librosa's chroma filters (no tuning offset, starting at C): (num_chroma, n_fft // 2 + 1).

    Each FFT bin contributes to the pitch classes near its frequency with a Gaussian bump, each
    bin's column is L2-normalised, and bins are weighted by a Gaussian over octaves centred at
    880 Hz (5 octaves above 27.5 Hz) with a half-width of 2 octaves.
    """
    frequencies = np.arange(1, n_fft) * sampling_rate / n_fft
    # Position of each bin in chroma steps, relative to A440 / 16 (27.5 Hz).
    pitch = num_chroma * np.log2(frequencies / (440.0 / 16))
    pitch = np.concatenate([[pitch[0] - 1.5 * num_chroma], pitch])  # DC: 1.5 octaves below
    width = np.concatenate([np.maximum(np.diff(pitch), 1.0), [1.0]])
    half = np.round(num_chroma / 2)
    distance = pitch[None, :] - np.arange(num_chroma)[:, None]
    distance = np.remainder(distance + half + 10 * num_chroma, num_chroma) - half
    filters = np.exp(-0.5 * (2 * distance / width[None]) ** 2)
    filters /= np.sqrt(np.sum(filters**2, axis=0, keepdims=True))
    filters *= np.exp(-0.5 * ((pitch / num_chroma - 5.0) / 2.0) ** 2)[None]
    filters = np.roll(filters, -3 * (num_chroma // 12), axis=0)  # start at C, not A
    return filters[:, : n_fft // 2 + 1]
