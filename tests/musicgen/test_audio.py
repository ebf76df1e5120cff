"""save_audio: formats by suffix, normalization modes, clear errors."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from musicgen import AudioError, InvalidArgumentError, save_audio

RATE = 32000


def tone(channels: int = 1, amplitude: float = 0.3, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    wave = amplitude * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave * (c + 1) / channels for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "container"), [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")]
)
@pytest.mark.parametrize("channels", [1, 2])
def test_formats_by_suffix(tmp_path, suffix, container, channels):
    audio = mx.array(tone(channels))
    path = save_audio(tmp_path / f"out{suffix}", audio, RATE, normalize="none")
    info = sf.info(str(path))
    assert (info.format, info.channels, info.samplerate) == (container, channels, RATE)
    assert info.frames == audio.shape[1]
    data, _ = sf.read(str(path), always_2d=True)
    tolerance = 0.05 if suffix == ".ogg" else 1e-4  # vorbis is lossy
    np.testing.assert_allclose(data.T, tone(channels), atol=tolerance)


def test_normalize_modes(tmp_path):
    audio = tone(amplitude=0.1)
    peak, _ = sf.read(str(save_audio(tmp_path / "p.wav", audio, RATE, normalize="peak")))
    assert np.abs(peak).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    rms, _ = sf.read(str(save_audio(tmp_path / "r.wav", audio, RATE, normalize="rms")))
    assert np.sqrt(np.mean(rms**2)) == pytest.approx(0.1, abs=1e-3)  # -20 dBFS
    loud = tone(amplitude=3.0)
    clipped, _ = sf.read(str(save_audio(tmp_path / "c.wav", loud, RATE, normalize="clip")))
    assert np.abs(clipped).max() == pytest.approx(1.0, abs=1e-3)
    same, _ = sf.read(str(save_audio(tmp_path / "n.wav", audio, RATE, normalize=None)))
    np.testing.assert_allclose(same, audio[0], atol=1e-4)


def test_silence_stays_silent_and_one_dimensional_audio_is_mono(tmp_path):
    path = save_audio(tmp_path / "sub" / "dir" / "silence.flac", np.zeros(800), RATE)
    data, rate = sf.read(str(path))
    assert rate == RATE and data.shape == (800,) and not data.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "out.mp3"}, "use a .wav, .flac or .ogg file name"),
        ({"normalize": "loudest"}, "normalize must be one of loudness, peak, rms, clip, none"),
        ({"sample_rate": 0}, "sample_rate must be a positive integer"),
        ({"sample_rate": 44100.5}, "sample_rate must be a positive integer"),
        ({"audio": np.zeros((1, 2, 100))}, "shape (channels, samples)"),
        ({"audio": np.zeros((3, 100))}, "1 or 2 channels"),
        ({"audio": np.zeros((1, 0))}, "shape (channels, samples)"),
        ({"audio": np.full((1, 10), np.nan)}, "NaN or infinite"),
        ({"audio": "noise"}, "audio must be an array of samples"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    arguments = {"path": "out.wav", "audio": tone(), "sample_rate": RATE, **kwargs}
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        save_audio(
            tmp_path / arguments.pop("path"),
            arguments.pop("audio"),
            arguments.pop("sample_rate"),
            **arguments,
        )


def test_unwritable_path_is_an_audio_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(AudioError, match="could not write"):
        save_audio(blocker / "out.wav", tone(), RATE)


def test_generated_audio_saves(tiny_model, tmp_path):
    audio = tiny_model.generate(["calm"], duration=0.2, seed=0)
    path = save_audio(tmp_path / "calm.wav", audio[0], tiny_model.sample_rate)
    info = sf.info(str(path))
    assert (info.samplerate, info.frames) == (800, 160)
