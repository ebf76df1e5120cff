"""Loudness normalization: BS.1770 integrated loudness to -14 LUFS under a true-peak ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from musicgen import save_audio
from musicgen.audio import DEFAULT_NORMALIZE
from musicgen.loudness import (
    CEILING_DBTP,
    FILTER_BLOCK,
    TARGET_LUFS,
    db,
    iir,
    integrated_loudness,
    k_weighting,
    normalize_loudness,
    true_peak,
)

# BS.1770's K-weighting is scaled so that a 0 dBFS-peak sine at 997 Hz (-3.01 dB RMS) reads
# -3.01 LUFS; BS.1770 meters are held to +-0.1 LU of such reference values.
REFERENCE_LUFS = 10 * math.log10(0.5)  # -3.0103
TOLERANCE = 0.1


def sine(rate: int, seconds: float, amplitude: float = 1.0, hz: float = 997.0,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t + phase)


@pytest.mark.parametrize("rate", [48000, 44100, 32000])
def test_a_full_scale_997_hz_sine_reads_minus_3_01_lufs(rate):
    assert integrated_loudness(sine(rate, 3.0), rate) == pytest.approx(REFERENCE_LUFS,
                                                                       abs=TOLERANCE)
    # Two channels of it: twice the power, +3.01 LU.
    stereo = np.stack([sine(rate, 3.0)] * 2, axis=1)
    assert integrated_loudness(stereo, rate) == pytest.approx(0.0, abs=TOLERANCE)
    # 20 dB quieter reads 20 LU lower.
    assert integrated_loudness(sine(rate, 3.0, 0.1), rate) == pytest.approx(
        REFERENCE_LUFS - 20, abs=TOLERANCE)


def test_rates_too_low_for_k_weighting_are_measured_at_48_khz():
    """The K-weighting shelf (~1.5 kHz) lies beyond the Nyquist frequency of 800 Hz audio (the
    tiny test checkpoints' rate): such audio reads as the same tone at 48 kHz does."""
    reference = integrated_loudness(sine(48000, 2.0, 0.5, hz=100), 48000)
    for rate in (800, 4000):
        assert integrated_loudness(sine(rate, 2.0, 0.5, hz=100), rate) == pytest.approx(
            reference, abs=0.05)
        out, _ = normalize_loudness(sine(rate, 2.0, 0.5, hz=100), rate)
        assert integrated_loudness(out, rate) == pytest.approx(TARGET_LUFS, abs=0.01)


def test_a_clip_shorter_than_one_gating_block_is_measured_as_one_block():
    rate = 32000
    for seconds in (0.39, 0.1, 0.02):
        assert integrated_loudness(sine(rate, seconds), rate) == pytest.approx(
            REFERENCE_LUFS, abs=TOLERANCE)
    out, report = normalize_loudness(sine(rate, 0.2, 0.01), rate)
    assert report.loudness_lufs == pytest.approx(TARGET_LUFS)
    assert integrated_loudness(out, rate) == pytest.approx(TARGET_LUFS, abs=TOLERANCE)


def test_normalizes_to_minus_14_lufs():
    rate = 32000
    quiet = sine(rate, 2.0, 0.05).astype(np.float32)
    out, report = normalize_loudness(quiet, rate)
    assert out.dtype == np.float32 and not report.limited
    assert report.input_lufs == pytest.approx(REFERENCE_LUFS + db(0.05), abs=TOLERANCE)
    assert integrated_loudness(out, rate) == pytest.approx(TARGET_LUFS, abs=0.01)
    # a sine at -14 LUFS has a peak of 10 ** ((-14 + 3.01) / 20)
    assert np.abs(out).max() == pytest.approx(10 ** ((TARGET_LUFS - REFERENCE_LUFS) / 20),
                                              rel=0.02)


def test_the_true_peak_ceiling_lowers_the_gain_instead_of_clipping():
    rate = 32000
    signal = sine(rate, 2.0, 0.02)
    signal[rate // 2] = 0.9  # one click: the loudness gain would take it far past full scale
    out, report = normalize_loudness(signal, rate)
    assert report.limited and report.loudness_lufs < TARGET_LUFS
    assert report.true_peak_dbtp == pytest.approx(CEILING_DBTP)
    assert db(true_peak(out, rate)) == pytest.approx(CEILING_DBTP, abs=0.01)
    assert np.abs(out).max() < 1.0


def test_true_peak_finds_the_peak_between_samples():
    rate = 32000
    # A sine at a quarter of the rate, sampled 45 degrees off its crests: every sample is
    # at 0.707, the wave itself reaches 1.0.
    wave = sine(rate, 0.5, 1.0, hz=rate / 4, phase=math.pi / 4)
    assert np.abs(wave).max() == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert true_peak(wave, rate) == pytest.approx(1.0, abs=0.03)  # +0.25 dB at most


def test_silence_is_left_alone():
    out, report = normalize_loudness(np.zeros((32000, 2), np.float32), 32000)
    assert not out.any() and report.input_lufs is None and report.gain_db == 0.0
    assert normalize_loudness(np.zeros(0), 32000)[1].input_lufs is None


def test_save_audio_writes_loudness_normalized_files_by_default(tmp_path):
    assert DEFAULT_NORMALIZE == "loudness"
    rate = 32000
    audio = np.stack([sine(rate, 1.5, 0.02), sine(rate, 1.5, 0.01)]).astype(np.float32)
    path = save_audio(tmp_path / "a.flac", audio, rate)
    data, _ = sf.read(str(path), always_2d=True)
    assert integrated_loudness(data, rate) == pytest.approx(TARGET_LUFS, abs=0.05)
    assert db(true_peak(data, rate)) <= CEILING_DBTP + 0.01


@pytest.mark.parametrize("rate", [8000, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_readings_equal_pyloudnorms(rate, channels):
    """The meter is pyloudnorm's measure without SciPy: the same K-weighting, block placement
    and gates give the same reading for clips long and short, fading in from near silence (the
    gates drop blocks), mono to five channels."""
    pyloudnorm = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(rate + channels)
    for frames in (rate // 3, int(0.4 * rate), 3 * rate + 17):
        samples = rng.standard_normal((frames, channels)) * np.geomspace(1e-4, 0.5, frames)[:, None]
        samples[: frames // 5] *= 1e-3
        block = 0.4 if frames >= 0.4 * rate else frames / rate
        expected = pyloudnorm.Meter(rate, block_size=block).integrated_loudness(
            samples if channels > 1 else samples[:, 0])
        assert integrated_loudness(samples, rate) == pytest.approx(expected, abs=1e-8)


def test_the_k_weighting_filters_run_as_a_direct_recursion_would():
    """The block-parallel filter equals the plain recursion, across block boundaries and for a
    clip shorter than a block: each biquad, and the two as one filter of order 4."""

    def recursion(b, a, samples):
        out = np.zeros_like(samples)
        for n in range(len(samples)):
            out[n] = sum(b[k] * samples[n - k] for k in range(len(b)) if n >= k)
            out[n] -= sum(a[k] * out[n - k] for k in range(1, len(a)) if n >= k)
        return out

    rng = np.random.default_rng(0)
    (shelf_b, shelf_a), (pass_b, pass_a) = k_weighting(32000)
    both = np.convolve(shelf_b, pass_b), np.convolve(shelf_a, pass_a)
    for frames in (3, 1000, 2 * FILTER_BLOCK + 5):
        samples = rng.standard_normal((frames, 2))
        through_both = recursion(pass_b, pass_a, recursion(shelf_b, shelf_a, samples))
        got = iir(shelf_b, shelf_a, samples)
        assert np.abs(got - recursion(shelf_b, shelf_a, samples)).max() < 1e-9
        # Order 4 rounds more: the high-pass's zeros at DC now sit in the FIR part and its
        # double pole near 1 (an all-pole gain near 18000 at DC) in the recursion.
        assert np.abs(iir(*both, samples) - through_both).max() < 1e-6


def test_true_peak_reads_tones_and_noise_as_a_long_oversampling_filter_does():
    """Tones up to 14 kHz at 32 kHz, faded in and out (no edge to ring at), read their
    amplitude within 0.05 dB; white noise and a click read as SciPy's resample_poly at the
    same factor does (a far longer FIR) within 0.1 dB (BS.1770 Annex 2 allows a 4x meter to
    under-read by more)."""
    signal = pytest.importorskip("scipy.signal")
    rate, rng = 32000, np.random.default_rng(5)
    fade = np.minimum(1.0, np.minimum(np.arange(rate), np.arange(rate)[::-1]) / 320)
    for hz in (997, 5000, 10000, 14000):
        assert db(true_peak(sine(rate, 1.0, 0.5, hz=hz, phase=0.3) * fade, rate)) == (
            pytest.approx(db(0.5), abs=0.05))
    click = np.zeros(rate)
    click[rate // 2] = 0.8
    for clip in (rng.standard_normal((rate, 2)) * 0.1, click):
        expected = np.abs(signal.resample_poly(clip, 6, 1, axis=0)).max()
        assert db(true_peak(clip, rate)) == pytest.approx(db(expected), abs=0.1)


def test_more_channels_than_the_meter_weights_are_refused():
    with pytest.raises(ValueError, match="up to 5 channels"):
        integrated_loudness(np.zeros((32000, 6)), 32000)


def test_the_plugin_writes_a_track_without_importing_scipy(tmp_path):
    """Importing SciPy's signal module held the interpreter for 0.4 s of a fresh CLI call: a
    normalized track needs NumPy only."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from musicgen import save_audio\n"
            f"save_audio({str(tmp_path / 'a.wav')!r}, np.sin(np.arange(32000) / 5.0)[None] * 0.1,"
            " 32000)\n"
            "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
