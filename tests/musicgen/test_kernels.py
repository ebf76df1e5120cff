"""The fused CUDA kernels of the compiled decoding step (``musicgen.kernels``) against plain MLX.

Tests marked ``cuda`` need MLX's CUDA backend and are skipped elsewhere: CI has no GPU, so they
run on the GPU machine (``docs/performance.md`` says how and when they last ran). The tests of
when the kernels are used run everywhere.
"""

from __future__ import annotations

import importlib
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from musicgen import kernels
from musicgen.cache import StaticCache
from musicgen.config import DecoderConfig
from musicgen.decoder import MusicGenDecoder, cross_attention_bias
from musicgen.delay import codebook_delays
from musicgen.generate import generate_step
from musicgen.melody import MelodyDecoder
from musicgen.sampling import make_sampler

cuda = pytest.mark.skipif(not kernels.available(), reason="needs MLX's CUDA backend")
# Comparisons with MLX's own float32 decoding need its matmuls in full float32: on CUDA they
# run in TF32 unless MLX_ENABLE_TF32=0 (read once per process).
exact_float32 = pytest.mark.skipif(
    mx.default_device() == mx.gpu and os.environ.get("MLX_ENABLE_TF32") != "0",
    reason="MLX's float32 matmuls use TF32: run with MLX_ENABLE_TF32=0",
)

# ||got - want|| / ||want|| against the same operations in float32 on the same inputs.
TOLERANCE = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}
DTYPES = [mx.float32, mx.float16, mx.bfloat16]


def f64(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32), dtype=np.float64)


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rel_error(got: mx.array, want: mx.array | np.ndarray) -> float:
    """||got - want|| / ||want||; ``want`` in float64 where it is a NumPy array."""
    got, want = f64(got), want if isinstance(want, np.ndarray) else f64(want)
    assert np.isfinite(got).all()
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def normal(shape, key, scale=1.0, shift=0.0, dtype=mx.float32) -> mx.array:
    return (mx.random.normal(shape, key=mx.random.key(key)) * scale + shift).astype(dtype)


def randomize_norms(model: nn.Module) -> None:
    """LayerNorm scales and shifts away from 1 and 0, so that a kernel that drops them fails."""
    for i, (_, module) in enumerate(model.named_modules()):
        if isinstance(module, nn.LayerNorm):
            module.weight = normal(module.weight.shape, 100 + i, 0.3, 1.0)
            module.bias = normal(module.bias.shape, 200 + i, 0.3)


def small_config(layers: int = 2) -> DecoderConfig:
    """Shapes the kernels cover: head_dim 64, widths multiples of 256."""
    return DecoderConfig(
        vocab_size=64,
        num_hidden_layers=layers,
        ffn_dim=1024,
        num_attention_heads=4,
        hidden_size=256,
        pad_token_id=64,
        bos_token_id=64,
    )


def small_decoder(dtype=mx.float32) -> MusicGenDecoder:
    mx.random.seed(0)
    decoder = MusicGenDecoder(small_config(), text_dim=256)
    randomize_norms(decoder)
    decoder.set_dtype(dtype)
    mx.eval(decoder.parameters())
    return decoder


def text_conditioning(batch: int, dtype=mx.float32) -> tuple[mx.array, mx.array]:
    """Random decoder-width text states (B, 6, 256) whose last prompt is padded."""
    states = normal((batch, 6, 256), 7, dtype=dtype)
    mask = mx.ones((batch, 6), mx.int32)
    mask[-1, 4:] = 0
    return states * mask[..., None].astype(dtype), mask


def decode(decoder, *, batch: int, frames: int = 24, temperature: float = 0.0, compile=True):
    states, mask = text_conditioning(batch, decoder.layer_norm.weight.dtype)
    steps = generate_step(
        decoder,
        states,
        mask,
        num_frames=frames,
        guidance_scale=3.0,
        sampler=make_sampler(temperature, 20, 0.0),
        key=mx.random.key(5),
        delays=codebook_delays(4),
        compile=compile,
    )
    return np.array(mx.stack([step.tokens for step in steps], axis=-1))


# Where the kernels are used: everywhere.


def test_kernels_are_off_where_they_cannot_run(monkeypatch):
    monkeypatch.setenv("MUSICGEN_KERNELS", "0")
    assert not kernels.available()
    assert not StaticCache(2, 8, 4, 64, mx.float16).fused
    monkeypatch.delenv("MUSICGEN_KERNELS")
    assert kernels.available() == (mx.cuda.is_available() and mx.default_device() == mx.gpu)
    assert not StaticCache(2, 8, 4, 64, mx.float16, compile=False).fused
    assert not StaticCache(2, 8, 4, 24, mx.float16).fused  # head_dim not a multiple of 32
    assert not kernels.attention_fits(64, mx.int32)


def test_fused_linear_covers_few_rows_of_float_and_quantized_weights():
    layer = nn.Linear(1024, 512, bias=False)
    x = mx.zeros((2, 1, 1024))
    assert kernels.linear_fits(x, layer)
    assert kernels.linear_fits(mx.zeros((8, 1, 1024)), layer)
    assert not kernels.linear_fits(mx.zeros((9, 1, 1024)), layer)  # a matmul's job
    assert not kernels.linear_fits(mx.zeros((2, 1, 1000)), nn.Linear(1000, 8, bias=False))
    assert not kernels.linear_fits(x.astype(mx.float16), layer)  # dtypes differ
    assert not kernels.linear_fits(x, nn.Linear(1024, 512))  # a bias
    assert kernels.linear_fits(x, nn.QuantizedLinear(1024, 512, bias=False, bits=4))
    assert kernels.linear_fits(x, nn.QuantizedLinear(1024, 512, bias=False, bits=8))
    assert not kernels.linear_fits(x, nn.QuantizedLinear(1024, 512, bits=4))  # a bias
    assert not kernels.linear_fits(x, nn.QuantizedLinear(1024, 512, bias=False, bits=3))
    assert not kernels.linear_fits(mx.zeros((8, 1, 4096)), nn.Linear(4096, 8, bias=False))
    assert kernels.activation_fits(nn.gelu) and not kernels.activation_fits(mx.tanh)


# The kernels themselves: on CUDA only.


# Every form in every dtype at 2 rows (batch 1 with CFG), and other row counts for one form:
# each case is a kernel build, about a second.
LINEAR_CASES = [
    (dtype, 2, form) for dtype in DTYPES for form in ("norm", "norm+gelu", "residual", "plain")
]
LINEAR_CASES += [(mx.float16, rows, "norm+gelu") for rows in (1, 5, 8)]


def reference_linear(x, weight, norm=None, activation=None, residual=None, norm_dtype=None):
    """What ``kernels.fused_linear`` computes, in float64 on the CPU: the layer norm (its output
    rounded to ``norm_dtype`` where the kernel rounds it), the product with ``weight`` (out, in),
    the activation and the residual."""
    want = f64(x)
    if norm is not None:
        centered = want - want.mean(-1, keepdims=True)
        want = centered / np.sqrt((centered**2).mean(-1, keepdims=True) + norm.eps)
        want = want * f64(norm.weight) + f64(norm.bias)
        if norm_dtype is not None:
            want = f64(mx.array(want).astype(norm_dtype))
    want = want @ weight.T
    if activation is not None:
        want = np.array(activation(mx.array(want.astype(np.float32))), dtype=np.float64)
    if residual is not None:
        want = want + f64(residual)
    return want


@cuda
@pytest.mark.parametrize(("dtype", "rows", "form"), LINEAR_CASES)
def test_fused_linear_matches_mlx(dtype, rows, form):
    width = 1024 if rows * 1024 * dtype.size <= 40 * 1024 else 256
    layer = nn.Linear(width, 768, bias=False)
    norm = nn.LayerNorm(width)
    randomize_norms(norm)
    layer.set_dtype(dtype)
    norm.set_dtype(dtype)
    x = normal((rows, 1, width), 1, 2.0, 0.7, dtype)  # a mean and a scale for the norm to undo
    residual = normal((rows, 1, 768), 2, dtype=dtype) if form == "residual" else None
    activation = nn.gelu if form == "norm+gelu" else None
    with_norm = norm if form.startswith("norm") else None
    got = kernels.fused_linear(x, layer, norm=with_norm, activation=activation, residual=residual)

    # The reference in float64 on the CPU: MLX's float32 matmuls on CUDA use TF32 by default.
    want = reference_linear(x, f64(layer.weight), with_norm, activation, residual)
    assert got.shape == (rows, 1, 768) and got.dtype == dtype
    assert rel_error(got, want) < TOLERANCE[dtype]


def force_block_threads(monkeypatch, threads: int | None) -> None:
    """Run the attention kernels with blocks of ``threads`` (None: as they choose)."""
    if threads is not None:
        attention = importlib.import_module("musicgen.kernels.attention")
        monkeypatch.setattr(attention, "block_threads", lambda blocks, *args: threads)


def test_attention_blocks_shrink_for_large_batches_and_few_keys():
    attention = importlib.import_module("musicgen.kernels.attention")
    assert attention.block_threads(2 * 16) == attention.THREADS  # a cache: keys unknown
    assert attention.block_threads(2 * 16, keys=12) == 32  # cross-attention over 12 tokens
    assert attention.block_threads(2 * 16, keys=40) == 64
    assert attention.block_threads(2 * 16, keys=5000) == attention.THREADS
    assert attention.block_threads(512 * 16) == attention.block_threads(512 * 16, 12) == 64
    assert attention.block_threads(128 * 16, preload=True) == 128
    assert attention.block_threads(512 * 16, preload=True) == 128
    assert attention.block_threads(100 * 16, preload=True) == attention.THREADS
    # A chunk's values are loaded with its keys for MusicGen's heads of 64 in half precision.
    assert attention.preloads(64, mx.float16) and attention.preloads(64, mx.bfloat16)
    assert not attention.preloads(64, mx.float32) and not attention.preloads(128, mx.float16)


@cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("threads", [None, 32, 64])
def test_cross_attention_matches_sdpa(dtype, masked, threads, monkeypatch):
    force_block_threads(monkeypatch, threads)
    B, H, S, D, L = 3, 4, 9, 64, 2
    queries = normal((B, L, H * D), 1, dtype=dtype)
    keys, values = normal((B, H, S, D), 2, dtype=dtype), normal((B, H, S, D), 3, dtype=dtype)
    bias = None
    if masked:
        mask = mx.ones((B, S), mx.int32)
        mask[0, 5:] = 0
        bias = cross_attention_bias(mask, dtype)
    got = kernels.attention(queries, keys, values, scale=D**-0.5, bias=bias)
    heads = f64(queries).reshape(B, L, H, D).transpose(0, 2, 1, 3)
    scores = heads @ f64(keys).swapaxes(-1, -2) * D**-0.5
    if bias is not None:
        scores = scores + f64(bias)
    want = softmax(scores) @ f64(values)
    assert rel_error(got, want.transpose(0, 2, 1, 3).reshape(B, L, H * D)) < TOLERANCE[dtype]


@cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", [1, 3])
@pytest.mark.parametrize("threads", [None, 32, 64, 128])
def test_self_attention_reads_the_cache_and_writes_its_keys_in_place(dtype, length, threads,
                                                                     monkeypatch):
    force_block_threads(monkeypatch, threads)
    B, H, T, D, position = 2, 4, 300, 64, 217  # more keys than one block's 256 threads
    keys, values = normal((B, H, T, D), 1, dtype=dtype), normal((B, H, T, D), 2, dtype=dtype)
    mx.eval(keys, values)
    keys_before, values_before = f64(keys), f64(values)
    qkv = normal((B, length, 3 * H * D), 3, dtype=dtype)
    got, next_position = kernels.cached_attention(
        qkv, keys, values, mx.array([position], mx.int32), scale=D**-0.5
    )
    mx.eval(got, next_position)
    assert next_position.tolist()[0] == position + length

    queries, new_keys, new_values = f64(qkv).reshape(B, length, 3, H, D).transpose(2, 0, 3, 1, 4)
    written = slice(position, position + length)
    np.testing.assert_array_equal(f64(keys)[:, :, written], new_keys)
    np.testing.assert_array_equal(f64(values)[:, :, written], new_values)
    untouched = np.r_[0:position, position + length : T]
    np.testing.assert_array_equal(f64(keys)[:, :, untouched], keys_before[:, :, untouched])
    np.testing.assert_array_equal(f64(values)[:, :, untouched], values_before[:, :, untouched])

    all_keys = np.concatenate([keys_before[:, :, :position], new_keys], axis=2)
    all_values = np.concatenate([values_before[:, :, :position], new_values], axis=2)
    scores = queries @ all_keys.swapaxes(-1, -2) * D**-0.5
    visible = np.arange(position + length)[None] <= position + np.arange(length)[:, None]
    want = softmax(np.where(visible, scores, -np.inf)) @ all_values
    assert rel_error(got, want.transpose(0, 2, 1, 3).reshape(B, length, H * D)) < TOLERANCE[dtype]


def test_lstm_kernel_covers_few_rows_of_float_layers_a_warp_per_unit(monkeypatch):
    from musicgen.kernels import lstm

    monkeypatch.setattr(lstm, "multiprocessors", lambda: 132)
    x, wh = mx.zeros((1, 5, 4 * 512), mx.float16), mx.zeros((4 * 512, 512), mx.float16)
    assert kernels.lstm_fits(x, wh)
    assert kernels.lstm_fits(mx.zeros((8, 5, 4 * 512), mx.float32), wh.astype(mx.float32))
    assert not kernels.lstm_fits(x, wh.astype(mx.float32))  # mixed dtypes
    assert not kernels.lstm_fits(x.astype(mx.int32), wh.astype(mx.int32))
    assert not kernels.lstm_fits(mx.zeros((9, 5, 4 * 512), mx.float16), wh)  # rows
    assert not kernels.lstm_fits(mx.zeros((1, 0, 4 * 512), mx.float16), wh)  # no steps
    assert not kernels.lstm_fits(mx.zeros((1, 5, 4 * 24)), mx.zeros((4 * 24, 24)))  # no vectors
    # EnCodec's layer as musicgen runs it: float32, 1024 units (8 loads a lane and gate row),
    # 128 blocks of 256 threads where they fit, else 64 of 512.
    encodec = mx.zeros((1, 5, 4 * 1024)), mx.zeros((4 * 1024, 1024))
    assert kernels.lstm_fits(*encodec) and lstm._layout(1024) == (256, 128)
    monkeypatch.setattr(lstm, "multiprocessors", lambda: 108)
    assert kernels.lstm_fits(*encodec) and lstm._layout(1024) == (512, 64)
    assert not kernels.lstm_fits(mx.zeros((1, 5, 4 * 1152)), mx.zeros((4 * 1152, 1152)))  # > regs
    monkeypatch.setattr(lstm, "multiprocessors", lambda: 16)  # 32 warps' blocks not resident
    assert not kernels.lstm_fits(x, wh)


# EnCodec's LSTM: the one-kernel recurrence against the step-by-step MLX loop (kernels off),
# over the whole input and resumed from a state, as streaming decodes do.
@cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("rows", "size"), [(1, 512), (2, 256), (8, 512), (1, 1024), (8, 1024)])
def test_lstm_kernel_matches_the_step_by_step_loop(dtype, rows, size, monkeypatch):
    from musicgen.encodec.lstm import run_lstm

    layer = nn.LSTM(size, size)
    layer.set_dtype(dtype)
    x = normal((rows, 40, size), 1, dtype=dtype)
    start = normal((rows, size), 2, 0.5, dtype=dtype), normal((rows, size), 3, 0.5, dtype=dtype)
    assert kernels.lstm_fits(x @ layer.Wx.T, layer.Wh)
    got = run_lstm(layer, x, *start)
    first = run_lstm(layer, x[:, :25], *start)
    resumed = run_lstm(layer, x[:, 25:], first[1], first[2])
    monkeypatch.setenv("MUSICGEN_KERNELS", "0")
    want = run_lstm(layer, x, *start)
    assert float(want[0].astype(mx.float32).std()) > 0.05  # not a constant or saturated output
    for a, b in zip(got, want, strict=True):
        assert a.dtype == dtype
        assert rel_error(a, b) < TOLERANCE[dtype]
    joined = mx.concatenate([first[0], resumed[0]], axis=1)
    assert rel_error(joined, want[0]) < TOLERANCE[dtype]


# 2 and 4 rows (CFG doubles the batch): fused projections against MLX's float32 gemv; 10 rows:
# the projections are matmuls in every path, the attention kernels still fused.
@cuda
@exact_float32
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_fused_greedy_decoding_gives_the_unfused_and_the_plain_tokens(batch, monkeypatch):
    decoder = small_decoder()
    fused = decode(decoder, batch=batch)
    assert len(np.unique(fused)) > 8  # not a degenerate constant output
    np.testing.assert_array_equal(fused, decode(decoder, batch=batch, compile=False))
    monkeypatch.setenv("MUSICGEN_KERNELS", "0")
    np.testing.assert_array_equal(fused, decode(decoder, batch=batch))


@cuda
@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_fused_half_precision_logits_stay_close_to_the_unfused(dtype, monkeypatch):
    """Teacher-forced: no call's input depends on the previous call's output, so only the
    positions chain the kernels' cache writes and reads (``cached_attention``)."""
    decoder = small_decoder(dtype)
    states, mask = text_conditioning(2, dtype)
    codes = mx.random.randint(0, 64, (2, 4, 1), key=mx.random.key(3))

    def logits(steps: int = 5) -> mx.array:
        cache = decoder.make_static_cache(steps)
        cross_kv = decoder.cross_kv(states)
        bias = cross_attention_bias(mask, dtype)
        return mx.concatenate([decoder(codes, cross_kv, bias, cache) for _ in range(steps)], 2)

    fused = logits()
    monkeypatch.setenv("MUSICGEN_KERNELS", "0")
    assert rel_error(fused, logits()) < 10 * TOLERANCE[dtype]


@cuda
@exact_float32
def test_fused_melody_decoding_gives_the_plain_tokens():
    mx.random.seed(0)
    decoder = MelodyDecoder(small_config(), text_dim=256, num_chroma=12, chroma_length=20)
    randomize_norms(decoder)
    mx.eval(decoder.parameters())
    states, _ = text_conditioning(2)
    chroma = mx.eye(12)[mx.random.randint(0, 12, (2, 30), key=mx.random.key(4))]
    prefix, prefix_mask, unconditional = decoder.conditioning(states, chroma)

    def tokens(compile: bool) -> np.ndarray:
        steps = generate_step(
            decoder,
            prefix,
            prefix_mask,
            num_frames=16,
            sampler=make_sampler(0.0),
            delays=codebook_delays(4),
            unconditional=unconditional,
            compile=compile,
        )
        return np.array(mx.stack([step.tokens for step in steps], axis=-1))

    np.testing.assert_array_equal(tokens(True), tokens(False))
