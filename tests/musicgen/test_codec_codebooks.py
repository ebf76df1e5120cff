"""A codec that stores more codebooks than the decoder predicts (audiocraft's set_num_codebooks):
EnCodec at codebook_size 64 and target_bandwidths [2.2] at 50 frames/s (as at 32 kHz; here
8 kHz to keep the test quick) keeps 7 quantizers, the decoder predicts 4 per channel.
Generation, decoding, encoding (continuation) and streaming use the first 4, as transformers
does; mono and stereo against transformers."""

from __future__ import annotations

import musicgen
import numpy as np
import pytest
import torch
from musicgen import CheckpointError

from tests.musicgen.checkpoints import (
    AUDIO_ATOL,
    PROMPTS,
    TINY_DECODER,
    TINY_ENCODEC,
    TINY_T5,
    assert_generation_matches_reference,
    musicgen_config,
    reference_generate,
    reference_inputs,
    reference_model,
    write_musicgen,
)
from tests.musicgen.feature_checkpoints import tune

RATE = 8_000
# Small filters; 50 frames/s and 6-bit codebooks: 7 quantizers at 2.2 kbps.
SEVEN_QUANTIZERS = dict(TINY_ENCODEC, sampling_rate=RATE, upsampling_ratios=[8, 5, 4],
                        target_bandwidths=[2.2], codebook_size=64)  # fmt: skip
DECODER = dict(TINY_DECODER, vocab_size=64, pad_token_id=64, bos_token_id=64)
PROMPT_FRAMES, NEW_FRAMES = 10, 8


@pytest.fixture(scope="module", params=[1, 2], ids=["mono", "stereo"])
def checkpoint(request, tmp_path_factory):
    channels = request.param
    config = musicgen_config(TINY_T5, SEVEN_QUANTIZERS, DECODER, audio_channels=channels)
    path = write_musicgen(tmp_path_factory.mktemp("codebooks") / f"channels-{channels}", config)
    return musicgen.load(path), reference_model(path), path


def test_the_codec_keeps_its_seven_codebooks_and_uses_four(checkpoint):
    model, reference, _ = checkpoint
    assert reference.audio_encoder.quantizer.num_quantizers == 7
    assert len(model.codec.quantizer.layers) == 7
    assert model.codec.num_codebooks == 4
    assert model.num_codebooks == 4 * model.audio_channels


def test_greedy_generation_matches_transformers(checkpoint):
    model, reference, path = checkpoint
    assert_generation_matches_reference(model, reference, path, PROMPTS[:2], duration=0.3)


def test_continuation_matches_transformers_on_the_first_codebooks(checkpoint):
    """transformers' generate(input_values=...) reshapes the codec's 7 codebooks into the
    decoder's 4 and fails; its decoder input is the first 4 codebooks of its own encoder."""
    model, reference, path = checkpoint
    channels = model.audio_channels
    audio = np.stack([tune(0.2, RATE, seed=s, channels=channels) for s in (1, 2)])
    encode = reference.audio_encoder.encode
    with torch.no_grad():  # each channel coded apart, the codebooks interleaved
        coded = [encode(torch.tensor(audio[:, c : c + 1])).audio_codes for c in range(channels)]
    first = torch.stack([c[0, :, :4] for c in coded], dim=2).reshape(2, 4 * channels, -1)
    assert coded[0].shape[2] == 7 and first.shape[2] == PROMPT_FRAMES
    prompt_codes = model.encode_audio(audio, RATE, batch=2)
    assert np.array_equal(np.array(prompt_codes), first.numpy())

    inputs = reference_inputs(path, PROMPTS[:2])
    inputs["decoder_input_ids"] = first.reshape(2 * 4 * channels, PROMPT_FRAMES)
    expected_codes, expected_audio = reference_generate(
        reference, inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=NEW_FRAMES + 3
    )
    options = {"duration": (PROMPT_FRAMES + NEW_FRAMES) / 50, "temperature": 0}
    codes = model.generate_tokens(PROMPTS[:2], prompt_codes=prompt_codes, **options)
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    out = model.generate_continuation(audio, RATE, PROMPTS[:2], **options)
    np.testing.assert_allclose(np.array(out), expected_audio.numpy(), rtol=0, atol=AUDIO_ATOL)


def test_streaming_uses_the_decoders_codebooks(checkpoint):
    model = checkpoint[0]
    options = {"duration": 0.4, "seed": 3}
    chunks = model.stream("calm", chunk_frames=7, **options)
    streamed = np.concatenate([np.array(c) for c in chunks], axis=2)
    expected = np.array(model.generate("calm", **options))
    assert streamed.shape == expected.shape == (1, model.audio_channels, 20 * 160)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=1e-5)


def test_a_decoder_that_needs_more_codebooks_than_the_codec_stores_is_refused(tmp_path):
    config = musicgen_config(TINY_T5, SEVEN_QUANTIZERS, dict(DECODER, num_codebooks=8))
    path = write_musicgen(tmp_path / "eight", config)
    with pytest.raises(CheckpointError, match=r"predicts 8 codebooks .* stores only 7"):
        musicgen.load(path)
