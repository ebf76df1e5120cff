"""Loudness normalization: integrated loudness to -14 LUFS (ITU-R BS.1770), never clipping.

    audio, report = normalize_loudness(samples, 32000)   # samples: (frames, channels) float
    report.loudness_lufs, report.gain_db, report.true_peak_dbtp, report.limited

The meter is pyloudnorm's (K-weighting, 400 ms blocks with 75 % overlap, absolute gate at
-70 LUFS, relative gate at -10 LU), the same measure as audiocraft's ``loudness`` strategy.
Unlike audiocraft, which clips what lands beyond full scale, the gain here is lowered when
the track's true peak (BS.1770 Annex 2: the peak of the signal oversampled to at least
192 kHz) would rise above -1 dBTP, so the file never clips; the track is then quieter than
the target, and the report says so (``limited``).

A clip shorter than one 400 ms gating block is measured as a single block of its own length.
Audio at a rate too low for the K-weighting filters (their shelf sits near 1.5 kHz) is measured
resampled to 48 kHz, the rate BS.1770 specifies the meter at. Silence (nothing above the
-70 LUFS absolute gate) is left as it is, never scaled up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TARGET_LUFS = -14.0  # the level streaming services play music at; audiocraft's default headroom
CEILING_DBTP = -1.0  # true-peak ceiling: room for lossy encoders and resamplers
BLOCK_S = 0.400  # BS.1770 gating block
TRUE_PEAK_RATE = 192_000  # oversample to at least this rate to find inter-sample peaks
MAX_OVERSAMPLING = 16
METER_RATE = 48_000  # BS.1770's reference rate
MIN_METER_RATE = 8_000  # below this, measure at METER_RATE


@dataclass(frozen=True)
class LoudnessReport:
    """What normalization measured and did (levels in dB; None where there was nothing)."""

    input_lufs: float | None  # None: silence (below the absolute gate)
    gain_db: float
    loudness_lufs: float | None  # after the gain
    true_peak_dbtp: float | None  # after the gain
    limited: bool  # the ceiling lowered the gain: the track is quieter than the target


_preloading = False


def preload() -> None:
    """Import the meter (pyloudnorm and SciPy's signal module take about a second) in a
    background thread, once per process, so that a process about to generate a track has it by
    the time the track is written (the server and ``make_track`` start it before loading the
    model). The thread is not a daemon: a process that ends meanwhile waits for the import to
    finish rather than tearing SciPy's libraries down under it (which aborts the process)."""
    import threading

    global _preloading
    if _preloading:
        return
    _preloading = True

    def load() -> None:
        import pyloudnorm  # noqa: F401
        import scipy.signal  # noqa: F401

    threading.Thread(target=load, name="loudness-preload").start()


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """BS.1770 integrated loudness in LUFS of (frames, channels) or (frames,) samples; None for
    silence (no block above the -70 LUFS absolute gate). Clips shorter than one gating block
    are measured as one block of their own length."""
    import pyloudnorm

    samples = np.asarray(samples, dtype=np.float64)
    if sample_rate < MIN_METER_RATE and samples.shape[0] > 1:
        from scipy.signal import resample_poly

        samples = resample_poly(samples, METER_RATE, sample_rate, axis=0)
        sample_rate = METER_RATE
    frames = samples.shape[0]
    if frames == 0:
        return None
    block = BLOCK_S if frames >= BLOCK_S * sample_rate else frames / sample_rate
    loudness = pyloudnorm.Meter(sample_rate, block_size=block).integrated_loudness(samples)
    return float(loudness) if math.isfinite(loudness) else None


def true_peak(samples: np.ndarray, sample_rate: int) -> float:
    """The true peak (linear, 1.0 = full scale): the largest magnitude of the signal
    oversampled to at least 192 kHz (BS.1770 Annex 2), never below the sample peak."""
    from scipy.signal import resample_poly

    samples = np.asarray(samples, dtype=np.float64)
    if samples.size == 0:
        return 0.0
    peak = float(np.abs(samples).max())
    factor = min(math.ceil(TRUE_PEAK_RATE / sample_rate), MAX_OVERSAMPLING)
    if factor > 1 and samples.shape[0] > 1:
        peak = max(peak, float(np.abs(resample_poly(samples, factor, 1, axis=0)).max()))
    return peak


def db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def normalize_loudness(
    samples: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbtp: float = CEILING_DBTP,
) -> tuple[np.ndarray, LoudnessReport]:
    """``samples`` ((frames, channels) or (frames,)) scaled to ``target_lufs``, or less where
    the true peak would pass ``ceiling_dbtp``; and what was done."""
    samples = np.asarray(samples)
    measured = integrated_loudness(samples, sample_rate)
    if measured is None:
        return samples, LoudnessReport(None, 0.0, None, None, False)
    gain_db = target_lufs - measured
    peak_db = db(true_peak(samples, sample_rate))
    limited = peak_db + gain_db > ceiling_dbtp
    if limited:
        gain_db = ceiling_dbtp - peak_db
    out = samples * 10 ** (gain_db / 20)
    report = LoudnessReport(measured, gain_db, measured + gain_db, peak_db + gain_db, limited)
    return out.astype(samples.dtype, copy=False), report
