"""The kernels of the step's ends and of quantized layers (``musicgen.kernels``) against MLX.

``heads`` and ``sample`` (the final norm and the heads; guidance + top-k + the draw) and the
4-/8-bit ``fused_linear``. Tests marked ``cuda`` run where MLX's CUDA backend runs (the GPU
machine; CI skips them); the kernel cache and naming tests run everywhere.
"""

from __future__ import annotations

import os
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from musicgen import kernels
from musicgen.generate import fused_choice
from musicgen.kernels import compiler
from musicgen.sampling import make_sampler

from tests.musicgen.test_kernels import (
    DTYPES,
    TOLERANCE,
    cuda,
    decode,
    exact_float32,
    f64,
    normal,
    randomize_norms,
    reference_linear,
    rel_error,
    small_decoder,
)

# Where the kernels are kept and how they are named: everywhere.


def test_the_kernel_cache_lives_in_the_user_cache_folder_per_mlx_version(monkeypatch, tmp_path):
    monkeypatch.delenv(kernels.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    version = f"mlx-{mx.__version__}"
    if sys.platform == "linux":
        assert kernels.kernel_cache_dir() == tmp_path / "xdg" / "mlx-rag" / "kernels" / version
    assert kernels.kernel_cache_dir().name == version
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "mine"))
    assert kernels.kernel_cache_dir() == tmp_path / "mine" / version
    for off in ("0", "off", "false"):
        monkeypatch.setenv(kernels.CACHE_ENV, off)
        assert kernels.kernel_cache_dir() is None


def test_compiled_kernels_persist_unless_mlx_is_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setattr(mx.cuda, "is_available", lambda: True)
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "kernels"))
    monkeypatch.delenv("MLX_PTX_CACHE_DIR", raising=False)
    folder = kernels.persist_compiled_kernels()
    assert folder == tmp_path / "kernels" / f"mlx-{mx.__version__}" and folder.is_dir()
    assert os.environ["MLX_PTX_CACHE_DIR"] == str(folder)
    monkeypatch.setenv("MLX_PTX_CACHE_DIR", str(tmp_path / "theirs"))
    assert kernels.persist_compiled_kernels() is None  # the user's setting stands
    assert os.environ["MLX_PTX_CACHE_DIR"] == str(tmp_path / "theirs")
    monkeypatch.delenv("MLX_PTX_CACHE_DIR")
    monkeypatch.setenv(kernels.CACHE_ENV, "0")
    assert kernels.persist_compiled_kernels() is None and "MLX_PTX_CACHE_DIR" not in os.environ
    monkeypatch.setattr(mx.cuda, "is_available", lambda: False)
    monkeypatch.delenv(kernels.CACHE_ENV)
    assert kernels.persist_compiled_kernels() is None


def test_a_changed_kernel_gets_a_new_name():
    """Compiled kernels are kept on disk by name: an edited kernel must not load an old one."""
    f32 = mx.float32
    one = kernels.build("probe", "int a = 1;", (("x", f32),), (("y", f32),), A=1)
    names = {
        one.name,
        kernels.build("probe", "int a = 2;", (("x", f32),), (("y", f32),), A=1).name,
        kernels.build("probe", "int a = 2;", (("x", f32),), (("y", f32),), A=2).name,
        kernels.build("probe", "int a = 2;", (("x", mx.float16),), (("y", f32),), A=2).name,
    }
    assert len(names) == 4 and all(n.startswith("musicgen_probe_") for n in names)
    assert f"void {one.name}(const float* x, float* y)" in one.source


def test_a_kernel_is_compiled_once_and_then_read_from_the_cache(monkeypatch, tmp_path):
    compiled = []
    monkeypatch.setattr(compiler, "architecture", lambda: "sm_90")
    monkeypatch.setattr(compiler, "_compile", lambda source, arch: compiled.append(arch) or b"bin")
    monkeypatch.setattr(compiler, "_BINARIES", {})
    folder = tmp_path / "kernels"
    assert compiler.binary("musicgen_x_1", "src", folder) == b"bin"
    assert (folder / "musicgen_x_1.cubin").read_bytes() == b"bin"
    monkeypatch.setattr(compiler, "_BINARIES", {})  # a new process
    assert compiler.binary("musicgen_x_1", "src", folder) == b"bin" and compiled == ["sm_90"]
    assert compiler.binary("musicgen_x_2", "src", None) == b"bin" and len(compiled) == 2
    assert [p.name for p in folder.iterdir()] == ["musicgen_x_1.cubin"]  # nothing else left


def test_samplers_describe_their_settings_for_the_fused_step():
    assert make_sampler(0.7, 50, 0.0).settings == {
        "temperature": 0.7, "top_k": 50, "top_p": 0.0, "min_p": 0.0
    }
    assert make_sampler(0.0).settings["temperature"] == 0
    assert kernels.sampler_fits(make_sampler(1.0, 250, 0.0).settings, 2048)
    assert not kernels.sampler_fits(make_sampler(1.0, 250, 0.9).settings, 2048)  # top-p
    assert not kernels.sampler_fits(None, 2048)  # a sampler of one's own
    assert not kernels.sampler_fits(make_sampler().settings | {"min_p": 0.1}, 2048)
    assert not kernels.sampler_fits(make_sampler(1.0, 250, 0.0, 0.1).settings, 2048)  # min-p


# The kernels themselves: on CUDA only.


def reference_choice(logits, key, fixed, guidance_scale, temperature, top_k):
    """What generate_step's plain ``choose`` draws: MLX's sampler, one key or one per row."""
    sampler = make_sampler(temperature, top_k, 0.0)
    batch, codebooks = fixed.shape
    if guidance_scale is not None:
        cond, uncond = logits[:batch], logits[batch:]
        logits = uncond + (cond - uncond) * guidance_scale
    if key.ndim == 1:
        key, step = mx.random.split(key)
        codes = sampler(logits.reshape(batch * codebooks, -1), step).reshape(batch, codebooks)
    else:
        splits = [mx.random.split(row) for row in key]
        key = mx.stack([split[0] for split in splits])
        codes = mx.stack([sampler(logits[b], split[1]) for b, split in enumerate(splits)])
    return mx.where(fixed >= 0, fixed, codes), key


SAMPLE_CASES = [  # (vocab, guidance, temperature, top_k, per-row keys)
    (2048, 3.0, 1.0, 250, False),
    (2048, 3.0, 1.0, 250, True),
    (2048, None, 0.7, 0, False),
    (2048, 2.5, 0.0, 250, False),  # greedy
    (64, 3.0, 1.3, 20, True),  # a vocabulary smaller than a block
]


@cuda
@pytest.mark.parametrize(("vocab", "guidance", "temperature", "top_k", "per_row"), SAMPLE_CASES)
def test_sample_draws_mlx_samplers_codes_and_splits_its_keys(
    vocab, guidance, temperature, top_k, per_row
):
    batch, codebooks = 3, 4
    rows = 2 * batch if guidance is not None else batch
    for trial in range(4):  # fresh logits and keys each time
        logits = normal((rows, codebooks, vocab), 10 + trial, 3.0)
        if per_row:
            key = mx.stack([mx.random.key(100 * trial + b) for b in range(batch)])
        else:
            key = mx.random.key(trial)
        fixed = mx.full((batch, codebooks), -1, mx.int32)
        fixed[1, 2] = 7  # a code given by the prompt or the delay pattern
        got_codes, got_key = kernels.sample(
            logits, key, fixed, guidance_scale=guidance, temperature=temperature, top_k=top_k
        )
        want_codes, want_key = reference_choice(logits, key, fixed, guidance, temperature, top_k)
        np.testing.assert_array_equal(np.array(got_codes), np.array(want_codes))
        np.testing.assert_array_equal(np.array(got_key), np.array(want_key))
        assert got_codes[1, 2].item() == 7


@cuda
def test_sample_keeps_only_the_top_k_codes():
    logits = mx.broadcast_to(mx.arange(2048, dtype=mx.float32)[None, None], (1, 4, 2048))
    fixed = mx.full((1, 4), -1, mx.int32)
    seen = set()
    for seed in range(40):
        codes, _ = kernels.sample(logits * 0, mx.random.key(seed), fixed, guidance_scale=None,
                                  temperature=1.0, top_k=2048)  # fmt: skip
        seen |= set(np.array(codes).ravel().tolist())
        codes, _ = kernels.sample(logits, mx.random.key(seed), fixed, guidance_scale=None,
                                  temperature=0.05, top_k=3)  # fmt: skip
        assert set(np.array(codes).ravel().tolist()) <= {2045, 2046, 2047}
    assert len(seen) > 100  # without top-k every code can be drawn


@cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [2, 8])
def test_heads_match_the_float32_heads_on_the_normalized_states(dtype, rows):
    width, vocab = 256, 320
    norm = nn.LayerNorm(width)
    randomize_norms(norm)
    norm.set_dtype(dtype)
    heads = [nn.Linear(width, vocab, bias=False) for _ in range(4)]
    x = normal((rows, 1, width), 1, 2.0, 0.5, dtype)
    assert kernels.heads_fit(x, norm, heads)
    got = kernels.heads(x, norm, heads)
    states = f64(norm(x).astype(mx.float32))
    want = np.stack([states @ f64(head.weight).T for head in heads], axis=1)
    assert got.shape == (rows, 4, 1, vocab) and got.dtype == mx.float32
    # float32 heads; in half precision the normalized states are rounded to it, as MLX's
    # LayerNorm rounds them, which may differ by a unit in the last place.
    assert rel_error(got, want) < (1e-5 if dtype == mx.float32 else TOLERANCE[dtype])


QUANTIZED_CASES = [(dtype, bits, "norm+gelu", 2) for dtype in DTYPES for bits in (4, 8)]
QUANTIZED_CASES += [(mx.float16, 4, "residual", 2), (mx.float16, 4, "plain", 5)]


@cuda
@pytest.mark.parametrize(("dtype", "bits", "form", "rows"), QUANTIZED_CASES)
def test_quantized_fused_linear_matches_the_dequantized_weights(dtype, bits, form, rows):
    width = 1024 if rows * 1024 * dtype.size <= 40 * 1024 else 256
    layer = nn.QuantizedLinear.from_linear(nn.Linear(width, 768, bias=False), 64, bits)
    layer.set_dtype(dtype)
    norm = nn.LayerNorm(width)
    randomize_norms(norm)
    norm.set_dtype(dtype)
    x = normal((rows, 1, width), 1, 2.0, 0.7, dtype)
    residual = normal((rows, 1, 768), 2, dtype=dtype) if form == "residual" else None
    activation = nn.gelu if form == "norm+gelu" else None
    with_norm = norm if form.startswith("norm") else None
    assert kernels.linear_fits(x, layer)
    got = kernels.fused_linear(x, layer, norm=with_norm, activation=activation, residual=residual)

    codes = np.array(layer.weight).view(np.uint32)
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    q = ((codes[..., None] >> shifts) & ((1 << bits) - 1)).reshape(768, width).astype(np.float64)
    weight = q * np.repeat(f64(layer.scales), 64, 1) + np.repeat(f64(layer.biases), 64, 1)
    want = reference_linear(x, weight, with_norm, activation, residual, norm_dtype=dtype)
    assert got.shape == (rows, 1, 768) and got.dtype == dtype
    assert rel_error(got, want) < TOLERANCE[dtype]


@cuda
@exact_float32
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_sampled_decoding_draws_the_plain_paths_codes(batch, monkeypatch):
    decoder = small_decoder()
    assert fused_choice(make_sampler(1.0, 20, 0.0), 64, 3.0) is not None
    fused = decode(decoder, batch=batch, temperature=1.0)
    assert len(np.unique(fused)) > 8
    np.testing.assert_array_equal(fused, decode(decoder, batch=batch, temperature=1.0,
                                                 compile=False))  # fmt: skip


@cuda
def test_quantized_fused_logits_stay_close_to_mlx_quantized_matmuls(monkeypatch):
    """Teacher-forced, 4-bit decoder layers in float16: the same quantized model either way."""
    from musicgen.decoder import cross_attention_bias
    from musicgen.quantize import quantize_decoder

    from tests.musicgen.test_kernels import text_conditioning

    decoder = small_decoder(mx.float16)
    quantize_decoder(decoder, 4)
    mx.eval(decoder.parameters())
    states, mask = text_conditioning(2, mx.float16)
    codes = mx.random.randint(0, 64, (2, 4, 1), key=mx.random.key(3))

    def logits(steps: int = 5) -> mx.array:
        cache = decoder.make_static_cache(steps)
        cross_kv = decoder.cross_kv(states)
        bias = cross_attention_bias(mask, mx.float16)
        return mx.concatenate([decoder(codes, cross_kv, bias, cache) for _ in range(steps)], 2)

    fused = logits()
    monkeypatch.setenv("MUSICGEN_KERNELS", "0")
    assert rel_error(fused, logits()) < 10 * TOLERANCE[mx.float16]
