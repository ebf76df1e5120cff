"""facebook/musicgen-small's shapes (random weights): load, then greedy steps as transformers."""

from __future__ import annotations

import gc

import musicgen
import numpy as np
import pytest
import torch

from tests.musicgen.checkpoints import (
    SMALL_DECODER,
    SMALL_ENCODEC,
    SMALL_T5,
    assert_generation_matches_reference,
    musicgen_config,
    reference_inputs,
    reference_model,
    write_musicgen,
)

ATOL = 1e-4  # float32, absolute
PROMPTS = ["80s pop track with bassy drums and synth", "calm piano"]


@pytest.mark.slow
def test_musicgen_small_shapes_match_transformers(tmp_path):
    config = musicgen_config(SMALL_T5, SMALL_ENCODEC, SMALL_DECODER)
    path = write_musicgen(
        tmp_path / "musicgen-small", config, weight_norm="legacy", scale="small", dtype="float16"
    )
    gc.collect()
    model = musicgen.load(path)
    assert (model.sample_rate, model.frame_rate, model.num_codebooks) == (32000, 50, 4)
    assert len(model.decoder.layers) == 24 and model.decoder.layer_norm.weight.shape == (1024,)
    assert len(model.text_encoder.blocks) == 12 and model.codec.hop_length == 640

    reference = reference_model(path)
    ids, mask = model.tokenizer(PROMPTS)
    with torch.no_grad():
        expected = reference.text_encoder(**reference_inputs(path, PROMPTS)).last_hidden_state
    ours = np.array(model.text_encoder(ids, mask))
    np.testing.assert_allclose(ours, expected.numpy(), rtol=0, atol=ATOL)

    # 3 frames = 6 decoding steps with guidance (a batch of 2), then EnCodec at 32 kHz.
    assert_generation_matches_reference(model, reference, path, PROMPTS[:1], duration=0.06)
