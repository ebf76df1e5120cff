"""The one-kernel decoding step (``musicgen.kernels.decoder_step``) against the per-layer kernels.

Stacking the layers' weights and choosing the step run everywhere; tests marked ``cuda`` run the
kernel where MLX's CUDA backend runs (the GPU machine; CI skips them).
"""

from __future__ import annotations

import threading
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from musicgen import kernels
from musicgen.decoder import MusicGenDecoder, cross_attention_bias
from musicgen.melody import MelodyDecoder

from tests.musicgen.test_kernels import (
    TOLERANCE,
    cuda,
    decode,
    exact_float32,
    rel_error,
    small_config,
    small_decoder,
    text_conditioning,
)


def logits_of(decoder, codes, bias) -> mx.array:
    return decoder(codes, decoder.cross_kv(text_conditioning(2)[0]), bias)


def test_stacked_layers_are_the_weights_the_layers_hold():
    decoder = small_decoder()
    codes = mx.random.randint(0, 64, (2, 4, 3), key=mx.random.key(1))
    before = np.array(logits_of(decoder, codes, None))
    names = [name for name, _ in tree_flatten(decoder.parameters())]
    memory = mx.get_active_memory()
    stacked = kernels.stack_layers(decoder)
    assert mx.get_active_memory() <= memory * 1.01  # the layers hold views: nothing doubled
    assert [name for name, _ in tree_flatten(decoder.parameters())] == names
    np.testing.assert_array_equal(np.array(logits_of(decoder, codes, None)), before)
    fc2 = stacked.arrays["fc2"]
    assert fc2.shape == (2, 256, 1024)
    np.testing.assert_array_equal(np.array(fc2[1]), np.array(decoder.layers[1].fc2.weight))
    norm = decoder.layers[1].encoder_attn_layer_norm
    np.testing.assert_array_equal(np.array(stacked.arrays["norms"][1, 3]), np.array(norm.bias))
    embed = stacked.arrays["embed"]
    np.testing.assert_array_equal(np.array(embed[2]), np.array(decoder.embed_tokens[2].weight))
    assert stacked.current(decoder)
    decoder.layers[0].fc1.weight = decoder.layers[0].fc1.weight * 1  # a replaced weight
    assert not stacked.current(decoder)


def test_the_step_covers_musicgens_layers_only():
    decoder = small_decoder(mx.float16)
    assert kernels.step_fits(decoder)
    assert kernels.step_rows_fit(8, decoder) and not kernels.step_rows_fit(9, decoder)
    wide = MusicGenDecoder(small_config(), text_dim=256)
    wide.set_dtype(mx.float32)
    assert kernels.step_rows_fit(8, wide)  # 8 rows x 1024 float32 = 32 KB staged
    norm = decoder.layers[1].encoder_attn_layer_norm
    eps, norm.eps = norm.eps, norm.eps / 10
    assert not kernels.step_fits(decoder)  # the kernel normalizes with one epsilon
    norm.eps = eps
    assert kernels.step_fits(decoder)
    nn.quantize(decoder, group_size=64, bits=4, class_predicate=lambda _, m: type(m) is nn.Linear)
    assert not kernels.step_fits(decoder)
    melody = MelodyDecoder(small_config(), text_dim=256, num_chroma=12, chroma_length=20)
    assert not kernels.step_fits(melody)


def test_a_static_cache_stacks_the_layers_only_where_the_step_runs(monkeypatch):
    decoder = small_decoder()
    monkeypatch.setattr(kernels, "available", lambda: True)
    monkeypatch.setattr(kernels, "step_available", lambda: True)
    cache = decoder.make_static_cache(8)
    assert cache.fused and decoder.step_layers is not None
    stacked = decoder.step_layers
    decoder.make_static_cache(8)
    assert decoder.step_layers is stacked  # kept while the layers hold its views
    monkeypatch.setattr(kernels, "step_available", lambda: False)
    decoder.make_static_cache(8)
    assert decoder.step_layers is None


def test_folding_cross_attention_into_the_text_keeps_its_output():
    decoder = small_decoder()
    stacked = kernels.stack_layers(decoder)
    states, mask = text_conditioning(2)
    bias = cross_attention_bias(mask, mx.float32)
    keys, values, kq, vo = kernels.fold_cross_attention(
        stacked, decoder.config, decoder.cross_kv(states)
    )
    assert kq.shape == vo.shape == (2, 2, 4, 6, 256)  # layers, rows, heads, text, width
    x = mx.random.normal((2, 1, 256), key=mx.random.key(11))
    for i, layer in enumerate(decoder.layers):
        want = layer.encoder_attn(x, bias, kv=(keys[i], values[i]))
        scores = x[:, None] @ kq[i].swapaxes(-1, -2) * layer.encoder_attn.scale + bias
        got = (mx.softmax(scores, axis=-1) @ vo[i]).sum(axis=1)
        assert rel_error(got, want) < 1e-5


def test_cross_attention_is_folded_only_for_the_step_and_short_text(monkeypatch):
    decoder = small_decoder()
    cross_kv = decoder.cross_kv(text_conditioning(2)[0])
    assert decoder.fold_cross_kv(cross_kv) is cross_kv  # no one-kernel step
    monkeypatch.setattr(kernels, "available", lambda: True)
    monkeypatch.setattr(kernels, "step_available", lambda: True)
    decoder.make_static_cache(8)
    assert len(decoder.fold_cross_kv(cross_kv)) == 4
    # 4 heads x 6 positions x rows must stay within the width (256): folding pays.
    assert kernels.fold_fits(10, 6, decoder) and not kernels.fold_fits(11, 6, decoder)
    long_text = decoder.cross_kv(mx.zeros((2, 40, 256)))
    assert decoder.fold_cross_kv(long_text) is long_text


def teacher_forced(
    decoder, rows: int, steps: int, masked: bool, prompt: int = 1, fold: bool = False
) -> mx.array:
    """Logits of ``steps`` single positions after a ``prompt``-position first call; ``fold``:
    with the cross-attention folded into the text (as ``generate_step`` does)."""
    dtype = decoder.layer_norm.weight.dtype
    states, mask = text_conditioning(rows, dtype)
    bias = cross_attention_bias(mask, dtype) if masked else None
    cross_kv = decoder.cross_kv(states)
    cache = decoder.make_static_cache(prompt + steps)
    if fold:
        cross_kv = decoder.fold_cross_kv(cross_kv)
        assert len(cross_kv) == 4
    first = mx.random.randint(0, 64, (rows, 4, prompt), key=mx.random.key(3))
    out = [decoder(first, cross_kv, bias, cache)[:, :, -1:]]
    for i in range(steps):
        codes = mx.random.randint(0, 64, (rows, 4, 1), key=mx.random.key(10 + i))
        out.append(decoder(codes, cross_kv, bias, cache))
    return mx.concatenate(out, axis=2)


@cuda
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
@pytest.mark.parametrize("rows", [2, 4])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("fold", [False, True])
def test_one_kernel_step_gives_the_per_layer_kernels_logits(dtype, rows, masked, fold,
                                                            monkeypatch):
    decoder = small_decoder(dtype)
    calls = []
    step = kernels.decoder_step
    monkeypatch.setattr(kernels, "decoder_step", lambda *a, **k: calls.append(1) or step(*a, **k))
    got = teacher_forced(decoder, rows, 6, masked, fold=fold)
    assert calls, "the one-kernel step did not run"
    monkeypatch.setenv("MUSICGEN_STEP_KERNEL", "0")
    want = teacher_forced(decoder, rows, 6, masked)
    assert rel_error(got, want) < (10 if dtype != mx.float32 else 1) * TOLERANCE[dtype]


@cuda
def test_one_kernel_step_reads_a_long_cache(monkeypatch):
    """A 600-position prompt: each of the attention's warps reads several chunks of keys."""
    decoder = small_decoder(mx.float16)
    got = teacher_forced(decoder, 2, 3, True, prompt=600)
    monkeypatch.setenv("MUSICGEN_STEP_KERNEL", "0")
    want = teacher_forced(decoder, 2, 3, True, prompt=600)
    assert rel_error(got, want) < 10 * TOLERANCE[mx.float16]


@cuda
@exact_float32
@pytest.mark.parametrize("batch", [1, 2])
def test_one_kernel_greedy_decoding_gives_the_plain_tokens(batch, monkeypatch):
    decoder = small_decoder()
    fused = decode(decoder, batch=batch, frames=40)
    assert decoder.step_layers is not None
    np.testing.assert_array_equal(fused, decode(decoder, batch=batch, frames=40, compile=False))


def test_one_generation_at_a_time_may_run_the_one_kernel_step():
    """Each thread has its own stream: a second generation waits for the first one's end and
    for its last queued step, so two grids never hold the GPU's multiprocessors at once."""
    order, inside, release = [], threading.Event(), threading.Event()

    def first():
        with kernels.exclusive_steps() as issued:
            issued.last = mx.arange(3) + 1  # queued work the next generation must wait for
            inside.set()
            release.wait(10)
            order.append("first ends")

    def second():
        inside.wait(10)
        with kernels.exclusive_steps():
            order.append("second starts")
            with kernels.exclusive_steps():  # the same thread again: no deadlock
                order.append("nested")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    time.sleep(0.2)
    assert order == []  # the second waits
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first ends", "second starts", "nested"]


LAYOUTS = [(1024, 3072, 2), (4096, 1024, 2), (1536, 6144, 2), (8192, 2048, 2), (1024, 4096, 8)]


@pytest.mark.parametrize("width, columns, rows", LAYOUTS)
@pytest.mark.parametrize("dtype", [mx.float16, mx.float32])
def test_each_warp_reads_whole_passes_of_whole_column_groups(width, columns, rows, dtype):
    """The kernel's static checks hold for every layout chosen: whole passes over a row, whole
    groups of columns, at most 16 loads in flight and 16 accumulators a lane."""
    from musicgen.kernels.step import _columns_per_warp

    layout = _columns_per_warp(width, columns, rows, dtype, warps=132 * 16)
    chunks = width // (32 * (16 // dtype.size))
    assert chunks % layout["STEP"] == 0 and columns % layout["NC"] == 0
    assert layout["NC"] * layout["STEP"] <= 16
    assert layout["NC"] == 1 or layout["NC"] * rows <= 16
