"""musicgen.load(..., quantize=4|8): the decoder layers' matmuls in 4 or 8 bits.

Group-wise quantization needs input widths that are multiples of 64, so these tests use a
checkpoint with a 64-wide decoder (the tiny one is 24 wide).
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import musicgen
import numpy as np
import pytest
from mlx.utils import tree_flatten
from musicgen import InvalidArgumentError
from musicgen.decoder import cross_attention_bias
from musicgen.delay import apply_delay, codebook_delays

from tests.musicgen.checkpoints import (
    PROMPTS,
    TINY_DECODER,
    TINY_ENCODEC,
    TINY_T5,
    musicgen_config,
    write_musicgen,
)

WIDE_DECODER = {**TINY_DECODER, "hidden_size": 64, "ffn_dim": 128}


@pytest.fixture(scope="module")
def wide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = musicgen_config(TINY_T5, TINY_ENCODEC, WIDE_DECODER)
    return write_musicgen(tmp_path_factory.mktemp("musicgen") / "wide", config)


@pytest.fixture(scope="module")
def models(wide_path):
    return {bits: musicgen.load(wide_path, quantize=bits) for bits in (None, 4, 8)}


def decoder_bytes(model) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.decoder.parameters()))


def guided_logits(model) -> np.ndarray:
    """Teacher-forced guided logits (B, K, L, V) over the same random delayed codes."""
    return guided_logits_for(model.decoder, *model.encode_text(PROMPTS))


def guided_logits_for(decoder, states: mx.array, mask: mx.array) -> np.ndarray:
    """``guided_logits`` of ``decoder`` given decoder-width text states and their mask."""
    codes = mx.random.randint(0, 32, (len(PROMPTS), 4, 20), key=mx.random.key(5))
    sequence = apply_delay(codes, codebook_delays(4), 32)
    states = mx.concatenate([states, mx.zeros_like(states)])
    mask = mx.concatenate([mask, mx.zeros_like(mask)])
    logits = decoder(
        mx.concatenate([sequence, sequence]),
        decoder.cross_kv(states),
        cross_attention_bias(mask, states.dtype),
    )
    B = len(PROMPTS)
    return np.array(logits[B:] + (logits[:B] - logits[B:]) * 3.0)


@pytest.mark.parametrize("bits", [4, 8])
def test_every_decoder_layer_linear_is_quantized(models, bits):
    decoder = models[bits].decoder
    for layer in decoder.layers:
        for linear in (layer.self_attn.qkv_proj, layer.encoder_attn.q_proj, layer.fc1, layer.fc2):
            assert isinstance(linear, nn.QuantizedLinear) and linear.bits == bits
    assert not isinstance(decoder.embed_tokens[0], nn.QuantizedEmbedding)
    assert all(type(head) is nn.Linear for head in decoder.lm_heads)
    assert decoder.lm_heads[0].weight.dtype == mx.float32
    full = decoder_bytes(models[None])
    assert decoder_bytes(models[bits]) < full * (0.5 if bits == 8 else 0.35)


def test_quantized_logits_stay_close_to_the_full_precision_ones(models):
    reference = guided_logits(models[None])
    for bits, bound in ((8, 0.01), (4, 0.15)):
        logits = guided_logits(models[bits])
        error = np.linalg.norm(logits - reference) / np.linalg.norm(reference)
        assert 0 < error < bound, (bits, error)
    agreement = (guided_logits(models[8]).argmax(-1) == reference.argmax(-1)).mean()
    assert agreement > 0.95


def test_quantized_generation_is_finite_and_the_compiled_path_matches(models):
    model = models[4]
    audio = model.generate(PROMPTS, duration=0.3, seed=0)
    assert audio.shape == (3, 1, 15 * 16) and np.isfinite(np.array(audio)).all()
    from tests.musicgen.test_fast_path import tokens

    fast = tokens(model, compile=True)
    np.testing.assert_array_equal(fast, tokens(model, compile=False))


@pytest.mark.parametrize("bits", [3, 16, True, "4", 4.0])
def test_bad_quantize_values_are_refused_before_loading(bits, tmp_path):
    with pytest.raises(InvalidArgumentError, match="quantize must be one of 4, 8"):
        musicgen.load(tmp_path / "missing", quantize=bits)


def test_quantize_none_or_zero_loads_full_precision(wide_path, models):
    model = musicgen.load(wide_path, quantize=0)
    assert type(model.decoder.layers[0].fc1) is nn.Linear
    assert decoder_bytes(model) == decoder_bytes(models[None])


def test_quantized_loading_never_holds_every_full_precision_weight(tmp_path):
    """Weights are read, cast and quantized a module at a time: the float32 checkpoint is
    never in memory whole (measured on the real load path, not a model built in memory)."""
    deep = {**TINY_DECODER, "hidden_size": 128, "ffn_dim": 512, "num_hidden_layers": 8}
    path = write_musicgen(tmp_path / "deep", musicgen_config(TINY_T5, TINY_ENCODEC, deep))
    layers = {k: v for k, v in mx.load(str(path / "model.safetensors")).items()
              if ".layers." in k}  # fmt: skip
    full = sum(v.nbytes for v in layers.values())
    del layers
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    model = musicgen.load(path, quantize=4, progress=False)
    peak = mx.get_peak_memory() - base
    kept = sum(v.nbytes for _, v in tree_flatten(model.decoder.parameters()))
    assert kept < full / 3  # 4-bit layers, float32 embeddings and heads
    assert peak < full / 2, (peak, full)
