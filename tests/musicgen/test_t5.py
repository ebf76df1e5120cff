"""The T5 text encoder and the tokenizer against transformers on the same random checkpoint."""

from __future__ import annotations

import numpy as np
import torch
from musicgen.t5 import relative_position_buckets
from transformers.models.t5.modeling_t5 import T5Attention

from tests.musicgen.checkpoints import reference_inputs

ATOL = 1e-4  # float32, absolute
PROMPTS = ["lofi piano,  RAIN!", "epic brass with drums and a calm piano 123", "ü calm"]


def test_tokenizer_pads_a_batch_as_transformers(tiny_model, tiny_path):
    ids, mask = tiny_model.tokenizer(PROMPTS)
    expected = reference_inputs(tiny_path, PROMPTS)
    assert np.array(ids).tolist() == expected["input_ids"].tolist()
    assert np.array(mask).tolist() == expected["attention_mask"].tolist()
    assert np.array(mask).sum(1).tolist() != [ids.shape[1]] * 3  # the batch really is ragged


def test_hidden_states_match_transformers(tiny_model, tiny_reference, tiny_path):
    inputs = reference_inputs(tiny_path, PROMPTS)
    ids, mask = tiny_model.tokenizer(PROMPTS)
    ours = np.array(tiny_model.text_encoder(ids, mask))
    with torch.no_grad():
        theirs = tiny_reference.text_encoder(**inputs).last_hidden_state.numpy()
    assert np.abs(theirs).max() > 0.5  # the random weights give the test something to check
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ATOL)


def test_relative_position_buckets_match_transformers():
    length, buckets, distance = 300, 32, 128
    positions = torch.arange(length)
    expected = T5Attention._relative_position_bucket(
        positions[None, :] - positions[:, None], True, buckets, distance
    )
    ours = relative_position_buckets(length, buckets, distance)
    assert np.array_equal(np.array(ours), expected.numpy())
