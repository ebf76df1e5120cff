"""Audio given to MusicGen (melodies, continuation prompts): reading, checking, resampling.

Everything here is numpy: audio arrives as a file or as an array at some sample rate and
leaves as float32 at the rate and channel count the model needs. Resampling is a windowed-sinc
interpolator with the parameters transformers' MusicGen-Melody feature extractor gives
torchaudio (and audiocraft gives julius): 24 zero crossings, roll-off 0.945, Hann window.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from musicgen.errors import AudioError, InvalidArgumentError

LOWPASS_ZEROS = 24
ROLLOFF = 0.945
SILENCE = 1e-5  # peak amplitude (-100 dBFS) under which audio counts as silent

def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A sound file (wav, flac, ogg, ...) -> float32 (channels, samples) and its sample rate."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"cannot read audio: {path} does not exist or is not a file.")
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(
            f"cannot read audio from {path}: {exc}. Use a wav, flac or ogg file."
        ) from None
    return samples.T, int(sample_rate)


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample (..., samples) from ``orig_rate`` to ``new_rate`` Hz (band-limited).

    The output has ceil(samples x new_rate / orig_rate) samples; sample n is the input
    interpolated at time n / new_rate with a Hann-windowed sinc whose cutoff is 0.945 x the
    lower Nyquist frequency, as torchaudio's ``resample(rolloff=0.945, lowpass_filter_width=24)``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == new_rate:
        return audio.copy()
    length = audio.shape[-1]
    flat = audio.reshape(-1, length)
    out_length = -(-length * new_rate // orig_rate)
    g = math.gcd(orig_rate, new_rate)
    step, phases = orig_rate // g, new_rate // g  # input samples and outputs per period
    scale = min(1.0, new_rate / orig_rate) * ROLLOFF
    reach = math.ceil(LOWPASS_ZEROS / scale)  # input samples on each side with nonzero weight
    if phases * (step + 2 * reach) <= 2**22:
        # Polyphase: every period of `step` inputs gives `phases` outputs with the same weights.
        offsets = np.arange(-reach, reach + step)
        weights = _sinc_weights(offsets[None] - np.arange(phases)[:, None] * step / phases, scale)
        periods = -(-out_length // phases)
        padded = np.pad(flat, [(0, 0), (reach, periods * step + reach - length)])
        frames = np.lib.stride_tricks.sliding_window_view(padded, len(offsets), axis=-1)[:, ::step]
        out = (frames[:, :periods] @ weights.T).reshape(flat.shape[0], -1)[:, :out_length]
    else:  # rates without a small common period: weights computed per output, in blocks
        taps = np.arange(-reach, reach + 2)
        out = np.empty((flat.shape[0], out_length), np.float32)
        block = max(1, 2**20 // len(taps))
        for begin in range(0, out_length, block):
            n = np.arange(begin, min(begin + block, out_length))
            centers = n * orig_rate / new_rate  # output times, in input samples
            index = np.floor(centers).astype(np.int64)[:, None] + taps[None]
            weights = _sinc_weights(index - centers[:, None], scale)
            weights *= (index >= 0) & (index < length)  # zeros beyond both ends
            gathered = flat[:, np.clip(index, 0, length - 1)]
            out[:, n] = np.einsum("cnk,nk->cn", gathered, weights)
    return out.astype(np.float32).reshape(*audio.shape[:-1], out_length)


def _sinc_weights(distance: np.ndarray, scale: float) -> np.ndarray:
    """Interpolation weights for inputs ``distance`` input samples from the output time."""
    t = np.clip(distance * scale, -LOWPASS_ZEROS, LOWPASS_ZEROS)
    weights = np.sinc(t) * np.cos(t * np.pi / (2 * LOWPASS_ZEROS)) ** 2 * scale
    return weights.astype(np.float32)


def prepare_audio(
    audio,
    sample_rate: int | None,
    *,
    target_rate: int,
    channels: int,
    batch: int,
    what: str,
) -> list[np.ndarray]:
    """Audio for each of ``batch`` prompts as float32 (channels, samples) at ``target_rate``.

    ``audio`` is a file path, an array (samples,) or (channels, samples), a batch array
    (batch, channels, samples), or a list with one path or array per prompt; one item is used
    for every prompt. Arrays need ``sample_rate``; files carry theirs. Other rates are
    resampled; stereo becomes mono by averaging and mono becomes stereo by duplication (as
    audiocraft's convert_audio). Unreadable, empty, non-finite or silent audio raises.
    """
    if isinstance(audio, (list, tuple)):
        items = list(audio)
    elif _is_batch(audio):
        items = list(np.asarray(audio))
    else:
        items = [audio]
    if len(items) == 1:
        items = items * batch
    if len(items) != batch:
        raise InvalidArgumentError(
            f"{what}: got {len(items)} audio clips for {batch} prompts; give one clip for all "
            "prompts or one per prompt."
        )
    cache: dict[int, np.ndarray] = {}
    out = []
    for i, item in enumerate(items):
        if id(item) not in cache:
            cache[id(item)] = _prepare_one(item, sample_rate, target_rate, channels, f"{what} {i}")
        out.append(cache[id(item)])
    return out


def _is_batch(audio) -> bool:
    return hasattr(audio, "ndim") and audio.ndim == 3


def _prepare_one(item, sample_rate, target_rate, channels, what) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        samples, rate = read_audio(item)
        where = f"{what} ({item})"
        if sample_rate is not None and sample_rate != rate:
            raise InvalidArgumentError(
                f"{where}: the file is at {rate} Hz but the sample rate given is {sample_rate} Hz; "
                "leave the sample rate out for files."
            )
        sample_rate = rate
    else:
        where = what
        try:
            samples = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{where} must be a file path or an array of samples: {exc}"
            ) from None
        if sample_rate is None:
            raise InvalidArgumentError(
                f"{where}: give the sample rate of the audio array (e.g. 32000)."
            )
        if samples.ndim == 1:
            samples = samples[None]
    integer = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
    if not integer or sample_rate <= 0:
        raise InvalidArgumentError(
            f"{where}: the sample rate must be a positive integer, got {sample_rate!r}."
        )
    if samples.ndim != 2 or samples.shape[0] not in (1, 2):
        raise InvalidArgumentError(
            f"{where} must have shape (samples,) or (channels, samples) with 1 or 2 channels, "
            f"got {samples.shape}."
        )
    if samples.shape[1] == 0:
        raise InvalidArgumentError(f"{where} is empty (0 samples).")
    if not np.isfinite(samples).all():
        raise InvalidArgumentError(f"{where} contains NaN or infinite samples.")
    if float(np.abs(samples).max()) < SILENCE:
        raise InvalidArgumentError(
            f"{where} is silent (peak below -100 dBFS): there is nothing to follow. Check the "
            "file, or leave the audio out to generate from text alone."
        )
    if samples.shape[0] != channels:
        samples = (
            samples.mean(axis=0, keepdims=True) if channels == 1 else np.repeat(samples, 2, axis=0)
        )
    return resample(samples, int(sample_rate), target_rate)
