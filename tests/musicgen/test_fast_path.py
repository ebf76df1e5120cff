"""The optimised decoding path against the plain one: same tokens, same logits, one trace.

The fast path (``generate_step(compile=True)``, the default) runs each step as a compiled pass
over a fixed-shape cache (``StaticCache``) plus compiled sampling; ``compile=False`` is the plain
reference (growable ``KVCache``, nothing compiled).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from musicgen.cache import StaticCache
from musicgen.config import MusicGenConfig
from musicgen.decoder import (
    MusicGenDecoder,
    cross_attention_bias,
    linear,
    needs_cross_bias,
)
from musicgen.delay import apply_delay, codebook_delays
from musicgen.generate import generate_step
from musicgen.plugin import HUB_MODELS, hub_config
from musicgen.sampling import make_sampler

from tests.musicgen.checkpoints import PROMPTS

ATOL = 1e-5  # float32, absolute, between two MLX paths


def tokens(model, *, compile, guidance_scale=3.0, temperature=0.0, seed=0, frames=40, prompt=None):
    states, mask = model.encode_text(PROMPTS)
    steps = generate_step(
        model.decoder,
        states,
        mask,
        num_frames=frames,
        guidance_scale=guidance_scale,
        sampler=make_sampler(temperature, 250, 0.0),
        key=mx.random.key(seed),
        delays=codebook_delays(model.num_codebooks),
        prompt=prompt,
        compile=compile,
    )
    return np.array(mx.stack([step.tokens for step in steps], axis=-1))


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
def test_compiled_greedy_tokens_equal_the_plain_paths(tiny_model, guidance_scale):
    fast = tokens(tiny_model, compile=True, guidance_scale=guidance_scale)
    plain = tokens(tiny_model, compile=False, guidance_scale=guidance_scale)
    assert fast.shape == (len(PROMPTS), 4, 43)
    assert len(np.unique(fast)) > 8  # not a degenerate constant output
    np.testing.assert_array_equal(fast, plain)


def test_compiled_sampling_draws_the_plain_paths_codes(tiny_model):
    fast = tokens(tiny_model, compile=True, temperature=1.0, seed=3)
    np.testing.assert_array_equal(fast, tokens(tiny_model, compile=False, temperature=1.0, seed=3))
    assert not np.array_equal(fast, tokens(tiny_model, compile=True, temperature=1.0, seed=4))


def test_compiled_continuation_equals_the_plain_path(tiny_model):
    prompt = mx.random.randint(0, 32, (len(PROMPTS), 4, 5), key=mx.random.key(2))
    fast = tokens(tiny_model, compile=True, prompt=prompt)
    np.testing.assert_array_equal(fast, tokens(tiny_model, compile=False, prompt=prompt))


def test_the_pass_is_traced_once_per_input_length(tiny_model, monkeypatch):
    lengths = []
    forward = MusicGenDecoder.forward

    def spy(self, codes, *args):
        lengths.append(codes.shape[-1])
        return forward(self, codes, *args)

    monkeypatch.setattr(MusicGenDecoder, "forward", spy)
    tokens(tiny_model, compile=True, frames=30)
    assert lengths == [1]  # 33 steps, one trace
    lengths.clear()
    tokens(tiny_model, compile=True, frames=30, prompt=mx.zeros((3, 4, 4), mx.int32))
    assert lengths == [5, 1]  # the prompt's first call, then the steps
    lengths.clear()
    tokens(tiny_model, compile=False, frames=30)
    assert len(lengths) == 33


def test_static_cache_logits_equal_the_growable_caches(tiny_model):
    decoder = tiny_model.decoder
    codes = mx.random.randint(0, 32, (len(PROMPTS), 4, 8), key=mx.random.key(1))
    sequence = mx.concatenate([apply_delay(codes, codebook_delays(4), 32)] * 2)
    states, mask = tiny_model.encode_text(PROMPTS)
    states = mx.concatenate([states, mx.zeros_like(states)])
    mask = mx.concatenate([mask, mx.zeros_like(mask)])
    cross_kv, bias = decoder.cross_kv(states), cross_attention_bias(mask, states.dtype)
    plain, compiled = decoder.make_cache(), decoder.make_static_cache(12)
    eager = decoder.make_static_cache(12, compile=False)
    for start, end in [(0, 3), (3, 4), (4, 5), (5, 9), (9, 10)]:
        chunk = sequence[:, :, start:end]
        expected = np.array(decoder(chunk, cross_kv, bias, plain))
        for cache in (compiled, eager):
            got = np.array(decoder(chunk, cross_kv, bias, cache))
            np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert compiled.offset == eager.offset == 10
    with pytest.raises(ValueError, match="12 positions; 10 are written"):
        decoder(sequence[:, :, :3], cross_kv, bias, compiled)


def test_a_static_cache_serves_one_function(tiny_model):
    cache = StaticCache(2, 8, 4, 6, mx.float32)
    codes = mx.zeros((1, 4, 1), mx.int32)
    cache(lambda codes, caches: codes.astype(mx.float32), codes)
    with pytest.raises(ValueError, match="one forward function"):
        cache(lambda codes, caches: codes, codes)


def test_cross_bias_is_left_out_only_where_it_changes_nothing(tiny_model):
    states, mask = tiny_model.encode_text(["calm", "epic brass with drums"])  # padded
    zeros, none = mx.zeros_like(states), mx.zeros_like(mask)
    assert needs_cross_bias(states, mask)
    assert not needs_cross_bias(states[1:], mask[1:])
    assert not needs_cross_bias(
        mx.concatenate([states[1:], zeros[1:]]), mx.concatenate([mask[1:], none[1:]])
    )
    assert needs_cross_bias(
        mx.concatenate([states[1:], states[1:]]), mx.concatenate([mask[1:], none[1:]])
    )
    # Unpadded prompt + unconditional branch: the same logits with and without the bias.
    guided = mx.concatenate([states[1:], zeros[1:]])
    guided_mask = mx.concatenate([mask[1:], none[1:]])
    cross_kv = tiny_model.decoder.cross_kv(guided)
    codes = mx.full((2, 4, 3), 32, mx.int32)
    with_bias = tiny_model.decoder(codes, cross_kv, cross_attention_bias(guided_mask, mx.float32))
    without = tiny_model.decoder(codes, cross_kv, None)
    np.testing.assert_allclose(np.array(without), np.array(with_bias), rtol=0, atol=ATOL)


def test_linear_gives_the_layers_result_for_every_shape(tiny_model):
    layer = tiny_model.decoder.layers[0].fc1
    for shape in [(1, 1, 24), (3, 1, 24), (6, 1, 24), (3, 5, 24)]:
        x = mx.random.normal(shape, key=mx.random.key(len(shape)))
        residual = mx.random.normal((*shape[:2], 48))
        np.testing.assert_allclose(np.array(linear(layer, x)), np.array(layer(x)), atol=ATOL)
        np.testing.assert_allclose(
            np.array(linear(layer, x, residual)), np.array(residual + layer(x)), atol=ATOL
        )


@pytest.mark.slow
def test_half_precision_logits_stay_finite_at_musicgen_small_shapes():
    """musicgen-small's decoder (24 layers, d=1024, random weights) in float16 and bfloat16:
    every logit finite over guided steps, with a padded prompt and the all-masked
    unconditional branch (the reference's known half-precision failure)."""
    config = MusicGenConfig.from_dict(hub_config(*HUB_MODELS["facebook/musicgen-small"][:3]))
    mx.random.seed(0)
    decoder = MusicGenDecoder(config.decoder, config.text_encoder.d_model)
    text = mx.random.normal((1, 9, 768))
    text_mask = mx.array([[1] * 4 + [0] * 5], dtype=mx.int32)  # as if padded in a batch
    for dtype in (mx.float16, mx.bfloat16):
        decoder.set_dtype(dtype)
        states = decoder.project_text(text.astype(dtype), text_mask)
        states = mx.concatenate([states, mx.zeros_like(states)])
        mask = mx.concatenate([text_mask, mx.zeros_like(text_mask)])
        cross_kv, bias = decoder.cross_kv(states), cross_attention_bias(mask, dtype)
        cache = decoder.make_static_cache(4)
        codes = mx.full((2, 4, 1), 2048, mx.int32)
        for _ in range(2):
            logits = decoder(codes, cross_kv, bias, cache)
            assert logits.dtype == mx.float32
            guided = logits[1:] + (logits[:1] - logits[1:]) * 3.0
            assert mx.all(mx.isfinite(logits)).item() and mx.all(mx.isfinite(guided)).item()
            codes = mx.argmax(logits, axis=-1).astype(mx.int32)
