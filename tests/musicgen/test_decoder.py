"""The MusicGen decoder's logits against transformers, step by step with the KV cache and CFG."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from musicgen.decoder import Attention, cross_attention_bias
from musicgen.delay import apply_delay, codebook_delays

from tests.musicgen.checkpoints import PROMPTS, reference_inputs

ATOL = 1e-4  # float32, absolute
GUIDANCE = 3.0


@pytest.fixture(scope="module")
def delayed_codes(tiny_model):
    """A (B, K, L) delayed sequence of random codes, as generation would feed the decoder."""
    K = tiny_model.num_codebooks
    codes = mx.random.randint(0, 32, (len(PROMPTS), K, 6), key=mx.random.key(1)).astype(mx.int32)
    return apply_delay(codes, codebook_delays(K), tiny_model.config.decoder.special_token_id)


def reference_cfg_logits(reference, inputs, sequence: np.ndarray) -> np.ndarray:
    """transformers' guided logits (B, K, L, V) for a whole sequence, batched as generate does."""
    B, K, L = sequence.shape
    with torch.no_grad():
        text = reference.text_encoder(**inputs).last_hidden_state
        states = torch.cat([text, torch.zeros_like(text)])
        mask = torch.cat([inputs["attention_mask"], torch.zeros_like(inputs["attention_mask"])])
        ids = torch.from_numpy(sequence).long().reshape(B * K, L).repeat(2, 1)
        logits = reference(
            encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=ids
        ).logits.reshape(2, B, K, L, -1)
    cond, uncond = logits[0], logits[1]
    return (uncond + (cond - uncond) * GUIDANCE).numpy()


def guided_inputs(model):
    states, mask = model.encode_text(PROMPTS)
    states = mx.concatenate([states, mx.zeros_like(states)])
    mask = mx.concatenate([mask, mx.zeros_like(mask)])
    return model.decoder.cross_kv(states), cross_attention_bias(mask, states.dtype)


def test_guided_logits_match_transformers_step_by_step(
    tiny_model, tiny_reference, tiny_path, delayed_codes
):
    inputs = reference_inputs(tiny_path, PROMPTS)
    expected = reference_cfg_logits(tiny_reference, inputs, np.array(delayed_codes))
    cross_kv, bias = guided_inputs(tiny_model)
    cache = tiny_model.decoder.make_cache()
    B, _, L = delayed_codes.shape
    assert np.abs(expected).max() > 1  # logits at a scale where errors would show
    for step in range(L):
        codes = mx.concatenate([delayed_codes[:, :, step : step + 1]] * 2)
        logits = np.array(tiny_model.decoder(codes, cross_kv, bias, cache)[:, :, 0])
        guided = logits[B:] + (logits[:B] - logits[B:]) * GUIDANCE
        np.testing.assert_allclose(guided, expected[:, :, step], rtol=0, atol=ATOL)


def test_whole_sequence_with_causal_mask_equals_cached_steps(tiny_model, delayed_codes):
    cross_kv, bias = guided_inputs(tiny_model)
    codes = mx.concatenate([delayed_codes] * 2)
    whole = np.array(tiny_model.decoder(codes, cross_kv, bias))
    cache = tiny_model.decoder.make_cache(max_length=4)  # grows past its first allocation
    steps = [
        np.array(tiny_model.decoder(codes[:, :, s : s + 2], cross_kv, bias, cache))
        for s in range(0, codes.shape[2], 2)
    ]
    np.testing.assert_allclose(whole, np.concatenate(steps, axis=2), rtol=0, atol=ATOL)


def test_cross_attention_keys_and_values_are_computed_once(tiny_model, monkeypatch):
    lengths = []
    project = Attention.project_kv

    def spy(self, x):
        lengths.append(x.shape[1])
        return project(self, x)

    monkeypatch.setattr(Attention, "project_kv", spy)
    steps = list(tiny_model.stream_tokens(PROMPTS, duration=0.2, temperature=0))
    layers = tiny_model.config.decoder.num_hidden_layers
    text_length = tiny_model.tokenizer(PROMPTS)[0].shape[1]
    assert len(steps) == 13 and text_length > 1
    # One projection of the text per layer for the whole generation (any other projection is
    # of the one new position of a step).
    assert [n for n in lengths if n != 1] == [text_length] * layers


@pytest.mark.parametrize("vendor, left", [("openblas", True), ("mkl", False), (None, True)])
def test_few_row_products_on_the_cpu_take_the_form_their_blas_streams_fastest(
    vendor, left, monkeypatch
):
    # OpenBLAS streams a weight faster as the left operand (W x^T), MKL as the right (x W^T):
    # the same product either way.
    import types

    import rag_core
    from musicgen import decoder

    monkeypatch.setattr(rag_core, "blas_status", lambda: types.SimpleNamespace(vendor=vendor))
    decoder.weight_left_on_cpu.cache_clear()
    try:
        assert decoder.weight_left_on_cpu() is left
        layer = nn.Linear(64, 96, bias=False)
        x, residual = mx.random.normal((2, 1, 64)), mx.random.normal((2, 1, 96))
        got = decoder.linear(layer, x, residual)
        want = residual + x @ layer.weight.T
        assert got.shape == (2, 1, 96) and mx.allclose(got, want, atol=1e-5).item()
    finally:
        decoder.weight_left_on_cpu.cache_clear()


def test_the_decoders_gelu_matches_mlx_and_the_kernels_know_it():
    """On the CPU the decoder's GELU takes the rational erf (float32 rounding apart from
    nn.gelu); the CUDA kernels fuse it as the exact GELU."""
    import mlx.nn as nn
    from musicgen import kernels
    from musicgen.config import ACTIVATIONS

    x = mx.linspace(-12, 12, 4097)
    with mx.stream(mx.cpu):
        ours = ACTIVATIONS["gelu"](x)
    np.testing.assert_allclose(np.array(ours), np.array(nn.gelu(x)), rtol=0, atol=3e-6)
    assert kernels.activation_fits(ACTIVATIONS["gelu"])
