"""Long-form generation: windows join without gap or repeat, context re-fed, memory bounded.

The tiny model's window is shortened to 1 s (``max_duration``, 50 frames) so that a few
windows take a fraction of a second; the real models' window is 30 s.
"""

from __future__ import annotations

import mlx.core as mx
import musicgen.longform as longform
import numpy as np
import pytest
from musicgen import InvalidArgumentError
from musicgen.longform import EXTEND_STRIDE, TRAINED_DURATION, Window, plan_windows

from tests.musicgen.checkpoints import PROMPTS
from tests.musicgen.feature_checkpoints import SAMPLE_RATE, loaded, melody_checkpoint, tune


@pytest.fixture
def short_windows(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model, "max_duration", 1.0)
    return tiny_model


@pytest.fixture
def windows_seen(monkeypatch):
    """Each window's generate_step call: its prompt (context) and frame count."""
    calls = []
    generate_step = longform.generate_step

    def spy(decoder, states, mask, **kwargs):
        calls.append(kwargs)
        return generate_step(decoder, states, mask, **kwargs)

    monkeypatch.setattr(longform, "generate_step", spy)
    return calls


def test_windows_follow_audiocraft_extend_stride():
    # 40 s at 50 Hz with 30 s windows and an 18 s stride: [0, 30 s) then [18 s, 40 s).
    assert plan_windows(2000, 1500, 900) == [Window(0, 0, 1500), Window(900, 600, 1100)]
    # 120 s: windows every 18 s, each re-feeding 12 s; the new frames add up exactly.
    windows = plan_windows(6000, 1500, 900)
    assert [w.start for w in windows] == [0, 900, 1800, 2700, 3600, 4500]
    assert [w.context for w in windows] == [0] + [600] * 5
    assert sum(w.length - w.context for w in windows) == 6000
    assert windows[-1].start + windows[-1].length == 6000
    # An audio prompt is the first window's context; up to one window is a single run.
    assert plan_windows(1200, 1500, 900, prompt_frames=300) == [Window(0, 300, 1200)]
    assert plan_windows(1500, 1500, 900) == [Window(0, 0, 1500)]
    assert plan_windows(1501, 1500, 900) == [Window(0, 0, 1500), Window(900, 600, 601)]
    assert (TRAINED_DURATION, EXTEND_STRIDE) == (30.0, 18.0)


def test_two_windows_join_without_gap_or_repeated_segment(short_windows, windows_seen):
    model = short_windows  # 50-frame windows; a 0.6 s stride re-feeds the last 20 frames
    codes = model.generate_tokens(PROMPTS[:2], duration=1.6, temperature=0, extend_stride=0.6)
    assert codes.shape == (2, 4, 80)  # exactly round(1.6 s x 50 Hz) frames
    first, second = windows_seen
    assert (first["num_frames"], first["prompt"]) == (50, None)
    assert second["num_frames"] == 50
    # The second window is fed frames 30..49 of the first, unchanged...
    assert np.array_equal(np.array(second["prompt"]), np.array(codes[:, :, 30:50]))
    # ...and is exactly a continuation of them: greedy, it equals continuing those frames.
    alone = model.generate_tokens(
        PROMPTS[:2], duration=1.0, temperature=0, prompt_codes=codes[:, :, 30:50]
    )
    assert np.array_equal(np.array(alone), np.array(codes[:, :, 30:80]))
    # And the first window is the 1 s piece itself.
    one = model.generate_tokens(PROMPTS[:2], duration=1.0, temperature=0)
    assert np.array_equal(np.array(one), np.array(codes[:, :, :50]))
    # Audio: frames x hop samples, no more, no fewer.
    audio = model.decode(codes)
    assert audio.shape == (2, 1, 80 * 16)


def test_sampled_long_form_is_seeded_and_starts_like_a_short_piece(short_windows):
    model = short_windows
    long = model.generate_tokens(["calm"], duration=2.3, seed=11)
    assert long.shape == (1, 4, 115)
    assert mx.array_equal(long, model.generate_tokens(["calm"], duration=2.3, seed=11))
    short = model.generate_tokens(["calm"], duration=1.0, seed=11)
    assert np.array_equal(np.array(short), np.array(long[:, :, :50]))
    # Later windows draw fresh randomness: a window does not repeat the one before.
    assert not np.array_equal(np.array(long[:, :, 50:65]), np.array(long[:, :, 20:35]))


def test_memory_is_bounded_by_one_window(short_windows, monkeypatch):
    sizes = []
    decoder = type(short_windows.decoder)
    for name in ("make_cache", "make_static_cache"):
        if hasattr(decoder, name):
            make = getattr(decoder, name)

            def spy(self, max_length=None, *args, _make=make, **kwargs):
                sizes.append(max_length)
                return _make(self, max_length, *args, **kwargs)

            monkeypatch.setattr(decoder, name, spy)
    codes = short_windows.generate_tokens(["calm"], duration=5.0, seed=0)
    assert codes.shape == (1, 4, 250)
    assert len(sizes) == len(plan_windows(250, 50, 30))  # default stride: 18/30 of a window
    assert max(sizes) == 50 + 3  # one window of frames plus the delay pattern's tail


def test_two_minutes_are_planned_as_windows_of_thirty_seconds(tiny_model):
    steps = tiny_model.stream_tokens(["calm"], duration=120.0, seed=0)
    first = next(steps)
    steps.close()
    # 6 windows of 30 s (1500 frames + 3 delay steps), the first 1500 frames new, then 900 each.
    assert first.num_steps == 1503 + 5 * 903
    assert first.frame is None and first.index == 0


def test_long_pieces_are_decoded_in_windows(short_windows, monkeypatch):
    codes = short_windows.generate_tokens(["calm"], duration=2.2, seed=3)
    whole = short_windows.codec.decode(codes)  # in one go
    lengths = []
    decode = short_windows.codec.quantizer.decode

    def spy(chunk):
        lengths.append(chunk.shape[2])
        return decode(chunk)

    monkeypatch.setattr(short_windows.codec.quantizer, "decode", spy)
    audio = short_windows.decode(codes)
    assert audio.shape == (1, 1, 110 * 16)
    assert max(lengths) == 50  # one window of frames at a time
    np.testing.assert_allclose(np.array(audio), np.array(whole), rtol=0, atol=1e-5)
    assert mx.array_equal(audio, short_windows.generate(["calm"], duration=2.2, seed=3))


def test_long_form_continues_an_audio_prompt(short_windows, windows_seen):
    model = short_windows
    prompt = model.encode_audio(tune(0.4, seed=1), SAMPLE_RATE)  # 20 frames
    codes = model.generate_tokens(
        ["calm"], duration=1.8, temperature=0, prompt_codes=prompt, extend_stride=0.8
    )
    assert codes.shape == (1, 4, 90)
    assert np.array_equal(np.array(codes[:, :, :20]), np.array(prompt))
    assert [(c["num_frames"], c["prompt"].shape[2]) for c in windows_seen] == [(50, 20), (50, 10)]
    assert np.array_equal(np.array(windows_seen[1]["prompt"]), np.array(codes[:, :, 40:50]))


def test_each_window_reads_its_part_of_the_tiled_melody(monkeypatch, windows_seen):
    model = loaded(melody_checkpoint(audio_channels=1))
    monkeypatch.setattr(model, "max_duration", 1.0)
    conditioned = []
    conditioning = type(model.decoder).conditioning

    def spy(self, states, chroma=None):
        conditioned.append(chroma)
        return conditioning(self, states, chroma)

    monkeypatch.setattr(type(model.decoder), "conditioning", spy)
    melody = tune(0.7, seed=2)[0]  # 560 samples, shorter than a window: tiled
    model.generate_tokens("calm", duration=1.5, seed=0, melody=melody, melody_sample_rate=800)
    assert len(conditioned) == 2
    for chroma, start in zip(conditioned, [0, 30], strict=True):
        first = int(start / 50 * SAMPLE_RATE)
        window = melody[np.arange(first, first + SAMPLE_RATE) % len(melody)]
        assert np.array_equal(np.array(chroma), model.chroma([window]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duration": 3601.0}, "longer than the 3600 s"),
        ({"extend_stride": 30.0}, "extend_stride must be between 0 and 30"),
        ({"extend_stride": 0}, "extend_stride must be between 0 and 30"),
        ({"extend_stride": "18"}, "extend_stride must be a number"),
    ],
)
def test_bad_long_form_options(tiny_model, options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tiny_model.generate_tokens(["calm"], **{"duration": 60.0, **options})
