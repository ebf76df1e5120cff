"""Loudness normalization: integrated loudness to -14 LUFS (ITU-R BS.1770), never clipping.

    audio, report = normalize_loudness(samples, 32000)   # samples: (frames, channels) float
    report.loudness_lufs, report.gain_db, report.true_peak_dbtp, report.limited

The meter follows BS.1770-4 as pyloudnorm implements it (K-weighting, 400 ms blocks with 75 %
overlap, absolute gate at -70 LUFS, relative gate at -10 LU), the same measure as audiocraft's
``loudness`` strategy; the tests hold it to pyloudnorm's readings. It is NumPy only: importing
SciPy's signal module, which pyloudnorm needs, held the interpreter for about 0.4 s of a fresh
CLI call on a GPU machine while the model loaded. Unlike audiocraft, which clips what lands
beyond full scale, the gain here is lowered when the track's true peak (BS.1770 Annex 2: the
peak of the signal oversampled to at least 192 kHz) would rise above -1 dBTP, so the file never
clips; the track is then quieter than the target, and the report says so (``limited``).

A clip shorter than one 400 ms gating block is measured as a single block of its own length.
Audio at a rate too low for the K-weighting filters (their shelf sits near 1.5 kHz) is measured
resampled to 48 kHz, the rate BS.1770 specifies the meter at. Silence (nothing above the
-70 LUFS absolute gate) is left as it is, never scaled up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TARGET_LUFS = -14.0  # the level streaming services play music at; audiocraft's default headroom
CEILING_DBTP = -1.0  # true-peak ceiling: room for lossy encoders and resamplers
BLOCK_S = 0.400  # BS.1770 gating block
TRUE_PEAK_RATE = 192_000  # oversample to at least this rate to find inter-sample peaks
TRUE_PEAK_TAPS = 16  # input samples behind each interpolated one
TRUE_PEAK_KAISER = 6.0  # the interpolator's window (Kaiser's beta)
TRUE_PEAK_BLOCK = 1 << 15  # samples oversampled at a time (a 2 MB matrix of their windows)
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


# BS.1770's K-weighting as two biquads (RBJ cookbook forms): a high shelf of +4 dB around
# 1.5 kHz (the head's acoustic effect), as (gain dB, Q, corner Hz), and a high-pass at 38 Hz,
# as (Q, corner Hz).
SHELF = (4.0, 1 / math.sqrt(2), 1500.0)
HIGH_PASS = (0.5, 38.0)
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
OVERLAP = 0.75
FILTER_BLOCK = 4096  # samples per block of the all-pole filter's parallel solution


def k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads at ``sample_rate``: [(b, a), (b, a)], a[0] == 1."""
    gain_db, q, corner = SHELF
    amplitude = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * corner / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    root = 2 * math.sqrt(amplitude) * alpha
    shelf_b = amplitude * np.array([(amplitude + 1) + (amplitude - 1) * cos + root,
                                    -2 * ((amplitude - 1) + (amplitude + 1) * cos),
                                    (amplitude + 1) + (amplitude - 1) * cos - root])
    shelf_a = np.array([(amplitude + 1) - (amplitude - 1) * cos + root,
                        2 * ((amplitude - 1) - (amplitude + 1) * cos),
                        (amplitude + 1) - (amplitude - 1) * cos - root])
    q, corner = HIGH_PASS
    w0 = 2 * math.pi * corner / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    pass_b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
    pass_a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return [(shelf_b / shelf_a[0], shelf_a / shelf_a[0]), (pass_b / pass_a[0], pass_a / pass_a[0])]


def iir(b: np.ndarray, a: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """``samples`` (frames, channels) through the filter b/a (a[0] == 1) from rest, exactly (as
    the direct recursion would, to rounding) but in blocks: each block's response from rest is
    a convolution with the impulse response (by FFT), plus the response to the state that the
    block before hands over (its last ``order`` outputs), which is carried in order."""
    frames, channels = samples.shape
    order = len(a) - 1
    fir = b[0] * samples
    for k in range(1, len(b)):
        fir[k:] += b[k] * samples[:-k]
    size = min(FILTER_BLOCK, max(frames, order))
    impulse = _impulse(tuple(float(c) for c in a[1:]), size)
    blocks = -(-frames // size)
    padded = np.zeros((blocks * size, channels))
    padded[:frames] = fir
    padded = padded.reshape(blocks, size, channels)
    spectrum = np.fft.rfft(impulse[:size], 2 * size)[None, :, None]
    rest = np.fft.irfft(np.fft.rfft(padded, 2 * size, axis=1) * spectrum, 2 * size, axis=1)
    rest = rest[:, :size]
    # The response over a block to y[-m] = 1 (m = 1..order), every other earlier output 0:
    # -sum over j >= m of a[j] impulse[n + m - j].
    shifted = np.concatenate([np.zeros(order), impulse[:size]])  # shifted[i + order] = impulse[i]
    n = np.arange(size)
    basis = np.stack([-sum(a[j] * shifted[n + m - j + order] for j in range(m, order + 1))
                      for m in range(1, order + 1)])  # (order, size)
    ends = basis[:, ::-1][:, :order]  # the basis at the block's last outputs, latest first
    state = np.zeros((order, channels))  # y[-1], ..., y[-order] before the block
    states = np.empty((blocks, order, channels))
    for k in range(blocks):
        states[k] = state
        state = rest[k, ::-1][:order] + ends.T @ state
    return (rest + np.einsum("mn,kmc->knc", basis, states)).reshape(-1, channels)[:frames]


@lru_cache(maxsize=16)
def _impulse(feedback: tuple[float, ...], size: int) -> np.ndarray:
    """The first ``size`` samples of 1 / (1 + sum of feedback[i] z^-(i + 1))'s impulse response
    (kept: the loop is pure Python, and a process normalizing tracks on several threads would
    hold the interpreter for it each time)."""
    impulse = np.zeros(size)
    impulse[0] = 1.0
    for n in range(1, size):
        impulse[n] = -sum(c * impulse[n - 1 - i] for i, c in enumerate(feedback) if n - 1 - i >= 0)
    impulse.flags.writeable = False
    return impulse


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """BS.1770 integrated loudness in LUFS of (frames, channels) or (frames,) samples; None for
    silence (no block above the -70 LUFS absolute gate). Clips shorter than one gating block
    are measured as one block of their own length."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.size == 0:
        return None
    samples = samples.reshape(samples.shape[0], -1)
    channels = samples.shape[1]
    if channels > len(CHANNEL_WEIGHTS):
        raise ValueError(f"loudness is measured for up to {len(CHANNEL_WEIGHTS)} channels, "
                         f"not {channels}")
    if sample_rate < MIN_METER_RATE and samples.shape[0] > 1:
        from musicgen.audio_input import resample

        samples = resample(samples.T, sample_rate, METER_RATE).T.astype(np.float64)
        sample_rate = METER_RATE
    frames = samples.shape[0]
    block = BLOCK_S if frames >= BLOCK_S * sample_rate else frames / sample_rate
    (shelf_b, shelf_a), (pass_b, pass_a) = k_weighting(sample_rate)
    # The two biquads as one filter of order 4: one pass over the audio instead of two.
    samples = iir(np.convolve(shelf_b, pass_b), np.convolve(shelf_a, pass_a), samples)
    # Mean squares of the gating blocks, placed as pyloudnorm places them.
    step = 1.0 - OVERLAP
    count = int(np.round((frames / sample_rate - block) / (block * step))) + 1
    j = np.arange(count, dtype=np.float64)
    lower = (block * (j * step) * sample_rate).astype(np.int64)
    upper = np.minimum((block * (j * step + 1) * sample_rate).astype(np.int64), frames)
    sums = np.concatenate([np.zeros((1, channels)), np.cumsum(samples**2, axis=0)])
    power = np.maximum(sums[upper] - sums[lower], 0.0) / (block * sample_rate)
    weighted = power @ np.array(CHANNEL_WEIGHTS[:channels])  # per block
    with np.errstate(divide="ignore"):
        blocks = -0.691 + 10 * np.log10(weighted)
    gated = blocks >= ABSOLUTE_GATE_LUFS
    if not gated.any():
        return None
    relative = -0.691 + 10 * math.log10(weighted[gated].mean()) + RELATIVE_GATE_LU
    gated = (blocks > relative) & (blocks > ABSOLUTE_GATE_LUFS)
    if not gated.any():
        return None
    loudness = -0.691 + 10 * math.log10(weighted[gated].mean())
    return loudness if math.isfinite(loudness) else None


def true_peak(samples: np.ndarray, sample_rate: int) -> float:
    """The true peak (linear, 1.0 = full scale): the largest magnitude of the signal
    oversampled to at least 192 kHz (BS.1770 Annex 2), never below the sample peak."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        return 0.0
    samples = samples.reshape(samples.shape[0], -1)
    peak = float(np.abs(samples).max())
    factor = min(math.ceil(TRUE_PEAK_RATE / sample_rate), MAX_OVERSAMPLING)
    if factor > 1 and samples.shape[0] > 1:
        weights = _interpolator(factor)
        reach = TRUE_PEAK_TAPS // 2
        padded = np.pad(samples, [(reach - 1, reach), (0, 0)])
        for channel in padded.T:
            for start in range(0, samples.shape[0], TRUE_PEAK_BLOCK):
                end = min(start + TRUE_PEAK_BLOCK, samples.shape[0])
                windows = np.lib.stride_tricks.sliding_window_view(
                    channel[start : end + TRUE_PEAK_TAPS - 1], TRUE_PEAK_TAPS)
                between = np.ascontiguousarray(windows) @ weights  # BLAS: threads run on
                peak = max(peak, float(np.abs(between).max()))
    return peak


@lru_cache(maxsize=4)
def _interpolator(factor: int) -> np.ndarray:
    """(TRUE_PEAK_TAPS, factor) float32: column p interpolates the signal p / factor of a
    sample after the window's middle sample, a Kaiser-windowed sinc (BS.1770 Annex 2 uses a
    12-tap-a-phase FIR at 4x); every column sums to 1 (column 0 is the sample itself)."""
    reach = TRUE_PEAK_TAPS // 2
    offsets = np.arange(TRUE_PEAK_TAPS) - (reach - 1)  # input samples from the middle one
    distance = np.arange(factor)[None, :] / factor - offsets[:, None]
    window = np.i0(TRUE_PEAK_KAISER * np.sqrt(np.clip(1 - (distance / reach) ** 2, 0, 1)))
    weights = np.sinc(distance) * window / np.i0(TRUE_PEAK_KAISER)
    weights = (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)
    weights.flags.writeable = False
    return weights


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
