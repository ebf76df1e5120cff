"""Checkpoints and references for the feature tests (melody, stereo, continuation, long-form).

Each checkpoint is written once per test session (cached here rather than in conftest.py,
so that every feature test module shares it):

    path = melody_checkpoint(audio_channels=1)   # transformers' MusicgenMelody layout
    model = loaded(path); reference = melody_reference(path)
    chroma = reference_chroma(waves, MELODY_PREPROCESSOR)   # as MusicgenMelodyFeatureExtractor

Test-only: torch and transformers are the reference implementation.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import musicgen
import numpy as np
import torch
from transformers import MusicgenMelodyConfig, MusicgenMelodyForConditionalGeneration
from transformers.audio_utils import chroma_filter_bank
from transformers.initialization import no_init_weights

from tests.musicgen.checkpoints import (
    TINY_DECODER,
    TINY_ENCODEC,
    TINY_T5,
    _randomize,
    write_tiny_musicgen,
    write_tokenizer,
)

# The feature extractor scaled to the tiny 800 Hz codec: 25 chroma frames per second.
MELODY_PREPROCESSOR = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "feature_size": 12,
    "num_chroma": 12,
    "sampling_rate": 800,
    "n_fft": 128,
    "hop_length": 32,
    "chunk_length": 30,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
}
CHROMA_LENGTH = 20  # melody frames the tiny decoder reads (0.8 s of melody)
SAMPLE_RATE = 800

_ROOT = Path(tempfile.mkdtemp(prefix="musicgen-features-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def melody_checkpoint(audio_channels: int = 1, seed: int = 0) -> Path:
    """A tiny random MusicGen-Melody checkpoint as facebook/musicgen-melody lays it out."""
    path = _ROOT / f"melody-{audio_channels}-{seed}"
    decoder = dict(TINY_DECODER, model_type="musicgen_melody_decoder")
    decoder.update(audio_channels=audio_channels, num_codebooks=4 * audio_channels)
    config = MusicgenMelodyConfig(
        text_encoder=TINY_T5,
        audio_encoder=TINY_ENCODEC,
        decoder=decoder,
        num_chroma=12,
        chroma_length=CHROMA_LENGTH,
    )
    torch.manual_seed(seed)
    with no_init_weights():
        model = MusicgenMelodyForConditionalGeneration(config).eval()
    model.tie_weights()
    _randomize(model, "spread", seed)
    model.save_pretrained(path)
    write_tokenizer(path)
    (path / "preprocessor_config.json").write_text(json.dumps(MELODY_PREPROCESSOR, indent=2))
    return path


@functools.cache
def stereo_checkpoint(seed: int = 0) -> Path:
    return write_tiny_musicgen(_ROOT / f"stereo-{seed}", audio_channels=2, seed=seed)


@functools.cache
def loaded(path: Path) -> musicgen.MusicGen:
    return musicgen.load(path)


@functools.cache
def melody_reference(path: Path) -> MusicgenMelodyForConditionalGeneration:
    model = MusicgenMelodyForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def reference_chroma(waves: list[np.ndarray], settings: dict) -> torch.Tensor:
    """MusicgenMelodyFeatureExtractor's input_features for mono clips at its sampling rate.

    Its own steps, with torch.stft standing in for torchaudio's Spectrogram(n_fft, hop,
    power=2, normalized=True, center=True) (torchaudio is not installable here).
    """
    n_fft, hop = settings["n_fft"], settings["hop_length"]
    limit = settings["chunk_length"] * settings["sampling_rate"]
    waves = [torch.tensor(np.asarray(w, np.float32)[:limit]) for w in waves]
    length = max(len(w) for w in waves)
    batch = torch.stack([torch.nn.functional.pad(w, (0, length - len(w))) for w in waves])
    if length < n_fft:
        pad = n_fft - length
        batch = torch.nn.functional.pad(batch, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(n_fft)
    stft = torch.stft(
        batch, n_fft, hop, n_fft, window, center=True, pad_mode="reflect", return_complex=True
    )
    spectrogram = (stft / window.pow(2).sum().sqrt()).abs().pow(2)
    filters = chroma_filter_bank(
        sampling_rate=settings["sampling_rate"], num_frequency_bins=n_fft, tuning=0, num_chroma=12
    )
    raw = torch.einsum("cf,...ft->...ct", torch.from_numpy(filters).float(), spectrogram)
    chroma = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    one_hot = torch.zeros_like(chroma)
    one_hot.scatter_(-1, chroma.argmax(-1, keepdim=True), 1)
    return one_hot


def tune(seconds: float, rate: int = SAMPLE_RATE, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A melody: a note every 0.15 s (frequencies well inside the band) over soft noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    notes = 55 * 2 ** (rng.integers(0, 24, size=int(seconds / 0.15) + 1) / 12)
    wave = np.sin(2 * np.pi * np.cumsum(notes[(t / 0.15).astype(int)]) / rate)
    noise = 0.05 * rng.standard_normal((channels, len(t)))
    return (0.5 * wave[None] + noise).astype(np.float32)


def run_cli(*args) -> tuple[int, str]:
    """`mlx-rag ARGS` in this process: (exit code, stdout + stderr)."""
    from click.testing import CliRunner
    from rag_core.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output
