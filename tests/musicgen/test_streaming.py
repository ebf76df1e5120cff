"""Streaming: chunks come while generating, and together they are the non-streamed audio."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from musicgen import InvalidArgumentError
from musicgen.streaming import write_stream

from tests.musicgen.checkpoints import PROMPTS
from tests.musicgen.feature_checkpoints import (
    SAMPLE_RATE,
    loaded,
    melody_checkpoint,
    stereo_checkpoint,
    tune,
)

STREAM_ATOL = 1e-5  # float32 rounding of the windowed EnCodec decode


def joined(chunks) -> np.ndarray:
    return np.concatenate([np.array(c) for c in chunks], axis=2)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("chunk_frames", [1, 7, 50])
def test_chunks_equal_the_generated_audio(tiny_model, channels, chunk_frames):
    model = tiny_model if channels == 1 else loaded(stereo_checkpoint())
    options = {"duration": 0.6, "seed": 5, "top_k": 8}
    chunks = list(model.stream(PROMPTS[:2], chunk_frames=chunk_frames, **options))
    expected = np.array(model.generate(PROMPTS[:2], **options))
    assert all(c.dtype == mx.float32 and c.shape[:2] == (2, channels) for c in chunks)
    assert all(c.shape[2] > 0 for c in chunks)
    streamed = joined(chunks)
    assert streamed.shape == expected.shape == (2, channels, 30 * 16)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=STREAM_ATOL)
    if chunk_frames < 30:
        latency = model.codec.stream_decoder().latency  # frames the codec looks ahead
        assert len(chunks) >= (30 - latency) // chunk_frames  # it did stream


def test_audio_comes_before_generation_ends(tiny_model, monkeypatch):
    progress = []
    stream_tokens = tiny_model.stream_tokens

    def counted(*args, **kwargs):
        for step in stream_tokens(*args, **kwargs):
            progress.append(step.index)
            yield step

    monkeypatch.setattr(tiny_model, "stream_tokens", counted)
    seen_at = []
    for chunk in tiny_model.stream("calm", duration=1.0, chunk_frames=10, seed=1):
        seen_at.append((progress[-1], chunk.shape[2]))
    total = 50 + 3
    assert progress[-1] == total - 1
    # The first audio arrives after 10 frames (+ the delay pattern's 3 steps), not at the end;
    # the codec holds back its look-ahead (a few frames) until the next chunk.
    latency = tiny_model.codec.stream_decoder().latency
    assert seen_at[0][0] == 10 + 3 - 1
    assert seen_at[0][1] == (10 - latency) * 16
    assert len(seen_at) == 6


def test_stream_reports_progress_as_generate_tokens_does(tiny_model):
    streamed, generated = [], []
    chunks = tiny_model.stream("calm", duration=0.4, seed=2, chunk_frames=5,
                               progress=lambda done, total: streamed.append((done, total)))
    first = next(chunks)
    assert first.shape[2] > 0 and streamed[-1][0] < streamed[-1][1]  # reported as it goes
    list(chunks)
    tiny_model.generate_tokens("calm", duration=0.4, seed=2,
                               progress=lambda done, total: generated.append((done, total)))
    assert streamed == generated and streamed[-1] == (23, 23)


def test_streaming_a_continuation_and_a_long_piece(tiny_model, monkeypatch):
    audio = tune(0.3, seed=2)
    options = {"duration": 0.7, "seed": 8}
    streamed = joined(tiny_model.stream("calm", prompt_audio=audio, prompt_sample_rate=800,
                                        chunk_frames=6, **options))  # fmt: skip
    expected = np.array(tiny_model.generate_continuation(audio, 800, "calm", **options))
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=STREAM_ATOL)

    monkeypatch.setattr(tiny_model, "max_duration", 1.0)  # 3 windows of at most 1 s
    streamed = joined(tiny_model.stream("calm", duration=2.0, chunk_frames=20, seed=3))
    expected = np.array(tiny_model.generate("calm", duration=2.0, seed=3))
    assert streamed.shape == expected.shape == (1, 1, 100 * 16)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=STREAM_ATOL)


def test_streaming_with_a_melody():
    model = loaded(melody_checkpoint(audio_channels=1))
    options = {"duration": 0.5, "seed": 2, "melody": tune(0.6), "melody_sample_rate": SAMPLE_RATE}
    streamed = joined(model.stream(PROMPTS[:2], chunk_frames=9, **options))
    expected = np.array(model.generate(PROMPTS[:2], **options))
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=STREAM_ATOL)


def test_write_stream_writes_the_file_as_chunks_arrive(tiny_model, tmp_path):
    path = tmp_path / "out.wav"
    chunks = list(tiny_model.stream(PROMPTS[:2], duration=0.5, chunk_frames=5, seed=4))
    sizes = []

    def watched():
        for chunk in chunks:
            if sizes or path.exists():
                sizes.append(sf.info(str(path)).frames)  # readable while being written
            yield chunk

    write_stream(path, watched(), tiny_model.sample_rate, item=1)
    written, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    expected = np.clip(joined(chunks)[1].T, -1, 1)
    np.testing.assert_allclose(written, expected, atol=1 / 2**15)
    assert sizes == sorted(sizes) and sizes[0] > 0 and sizes[-1] < len(written)


@pytest.mark.parametrize("chunk_frames", [0, -3, 2.5, True])
def test_bad_chunk_sizes(tiny_model, chunk_frames):
    with pytest.raises(InvalidArgumentError, match="chunk_frames must be a positive integer"):
        tiny_model.stream("calm", duration=0.5, chunk_frames=chunk_frames)


def test_bad_stream_targets(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"use a \.wav or \.flac file"):
        write_stream(tmp_path / "out.ogg", [], 800)
    with pytest.raises(InvalidArgumentError, match="the stream was empty"):
        write_stream(tmp_path / "out.wav", [], 800)


def test_the_cli_streams_to_the_output_file(tiny_path, tmp_path):
    import json

    from tests.musicgen.feature_checkpoints import run_cli

    out = tmp_path / "streamed.wav"
    args = ["music", "generate", "calm", "--model", tiny_path, "--duration", "0.6", "--seed", "3"]
    code, output = run_cli(*args, "--stream", "--output", out, "--json")
    assert code == 0, output
    record = json.loads(output[output.index("{") :])
    assert record["parameters"]["stream"] is True
    assert record["parameters"]["normalize"] == "clip"
    assert "--stream" in json.loads(out.with_name(out.name + ".json").read_text())["reproduce"]
    written, rate = sf.read(str(out), dtype="float32", always_2d=True)
    model = loaded(tiny_path)
    expected = np.clip(np.array(model.generate("calm", duration=0.6, seed=3))[0].T, -1, 1)
    assert rate == SAMPLE_RATE and written.shape == (30 * 16, 1)
    np.testing.assert_allclose(written, expected, atol=1 / 2**14)

    code, output = run_cli(*args, "--stream", "--output", tmp_path / "x.ogg")
    assert code == 1 and "use a .wav or .flac file" in output


def test_chunked_decoding_checks_the_codes_once_and_clearly(tiny_model, monkeypatch):
    # decode_chunks checks the shape; the stream decoder checks the values (one read-back).
    from musicgen import streaming
    from musicgen.encodec import quantizer
    from musicgen.streaming import decode_in_chunks

    codec, k = tiny_model.codec, tiny_model.num_codebooks
    reads, outer = [], []
    check, outer_check = quantizer.ResidualVectorQuantizer.check_codes, streaming.check_codes
    monkeypatch.setattr(quantizer.ResidualVectorQuantizer, "check_codes",
                        lambda self, codes: reads.append(1) or check(self, codes))  # fmt: skip
    monkeypatch.setattr(streaming, "check_codes", lambda *args, **kwargs:
                        outer.append(kwargs.get("values", True)) or outer_check(*args, **kwargs))
    good = mx.zeros((1, k, 12), mx.int32)
    assert decode_in_chunks(codec, good, chunk_frames=5).shape[0] == 1
    assert len(reads) == 3 and outer == [False] * 3  # the values are read back once a chunk
    with pytest.raises(InvalidArgumentError, match="codes range over"):
        decode_in_chunks(codec, good + codec.config.codebook_size, chunk_frames=5)
    with pytest.raises(InvalidArgumentError, match=f"with 1 to {k} codebooks"):
        decode_in_chunks(codec, mx.zeros((1, k + 1, 12), mx.int32), chunk_frames=5)
