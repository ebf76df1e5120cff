"""Per-kernel costs behind the MusicGen decoder on the GPU machine (docs/performance.md).

    python benchmarks/probe_musicgen_kernels.py --micro    # matmul forms, SDPA masks, ...
    python benchmarks/probe_musicgen_kernels.py --steps    # decoder step variants
    python benchmarks/probe_musicgen_kernels.py --choose   # best (ops per buffer, GEMV_ROWS)
    python benchmarks/probe_musicgen_kernels.py --large-batch  # a large batch's step by parts

Results go to $OUT/probe_*.json; --steps runs once per MLX_MAX_OPS_PER_BUFFER value.
"""
# ruff: noqa: B023 (each timed lambda runs inside the iteration that defines it)

import contextlib
import json
import os
import sys
import time

with contextlib.suppress(ImportError):
    import torch  # noqa: F401

import mlx.core as mx

OUT = os.environ.get("OUT", "/tmp")
results = {}
TAG = os.environ.get("MLX_MAX_OPS_PER_BUFFER", "20")


def log(name, value):
    results[name] = value
    print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def timeit(fn, n=20, warm=3):
    for _ in range(warm):
        mx.eval(fn())
    mx.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        mx.eval(fn())
    mx.synchronize()
    return (time.perf_counter() - t) / n * 1000


def per_op(fn, reps=48, n=10):
    return timeit(lambda: [fn() for _ in range(reps)], n=n) / reps * 1000


def micro():
    f16 = mx.float16
    for M in (2, 4, 32):
        for N, K, dt in (
            (3072, 1024, f16),
            (4096, 1024, f16),
            (1024, 4096, f16),
            (1024, 1024, f16),
            (2048, 1024, mx.float32),
        ):
            W = (mx.random.normal((N, K)) * 0.02).astype(dt)
            a = mx.random.normal((M, K)).astype(dt)
            a3 = a[:, None, :]
            Wt = W.T
            Wb = mx.broadcast_to(Wt, (M, K, N))
            mx.eval(W, a, a3)
            tag = f"M{M}_{N}x{K}_{str(dt)[9:]}"
            log(f"mm2d_{tag}", per_op(lambda: a @ Wt))
            log(f"mmbcast_{tag}", per_op(lambda: mx.matmul(a3, Wb)))
            if M == 2:
                log(f"mm1x2_{tag}", per_op(lambda: [a[0:1] @ Wt, a[1:2] @ Wt]))
            for bits in (4, 8):
                wq, s, b = mx.quantize(W.astype(f16), 64, bits)
                aq = a.astype(f16)
                mx.eval(wq, s, b, aq)
                log(
                    f"qmm{bits}_{tag}",
                    per_op(
                        lambda wq=wq, s=s, b=b, aq=aq: mx.quantized_matmul(
                            aq, wq, s, b, True, 64, bits
                        )
                    ),
                )
    for B in (2, 32):
        T = 512
        q = mx.random.normal((B, 16, 1, 64)).astype(f16)
        k = mx.random.normal((B, 16, T, 64)).astype(f16)
        v = mx.random.normal((B, 16, T, 64)).astype(f16)
        am = mx.where(mx.arange(T) < T // 2, 0, -mx.inf).astype(f16)[None]
        ks, vs = k[:, :, : T // 2], v[:, :, : T // 2]
        mx.eval(q, k, v, am, ks, vs)
        log(
            f"sdpa_B{B}_T{T}_none",
            per_op(lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125), 24),
        )
        log(
            f"sdpa_B{B}_T{T}_add",
            per_op(lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask=am), 24),
        )
        log(
            f"sdpa_B{B}_T{T // 2}_sliced_view",
            per_op(lambda: mx.fast.scaled_dot_product_attention(q, ks, vs, scale=0.125), 24),
        )
        kc, vc = k[:, :, :12], v[:, :, :12]
        cm = mx.zeros((B, 1, 1, 12), f16)
        mx.eval(kc, vc, cm)
        log(
            f"sdpa_cross_B{B}_none",
            per_op(lambda: mx.fast.scaled_dot_product_attention(q, kc, vc, scale=0.125), 24),
        )
        log(
            f"sdpa_cross_B{B}_add",
            per_op(
                lambda: mx.fast.scaled_dot_product_attention(q, kc, vc, scale=0.125, mask=cm), 24
            ),
        )
        new = mx.random.normal((B, 16, 1, 64)).astype(f16)
        mx.eval(new)

        def chained_update(k=k):
            buf = mx.array(k)
            for i in range(24):
                buf = mx.slice_update(buf, new, mx.array([i]), axes=(2,))
            return buf

        log(f"slice_update_chain_B{B}_per_op", timeit(chained_update, n=10) / 24 * 1000)
        x = mx.random.normal((B, 1, 1024)).astype(f16)
        w = mx.ones((1024,), f16)
        mx.eval(x, w)
        log(f"layer_norm_B{B}", per_op(lambda: mx.fast.layer_norm(x, w, w, 1e-5)))
        log(f"add_B{B}", per_op(lambda: x + x))


def steps():
    sys.path.insert(0, os.path.dirname(__file__))
    import musicgen.decoder as decoder_module
    from bench_musicgen import build_ours
    from musicgen.decoder import cross_attention_bias

    model = build_ours("small", "float16")
    dec = model.decoder
    dt = model.dtype
    for batch in (1, 16):
        states = mx.random.normal((2 * batch, 12, 1024)).astype(dt)
        mask = mx.ones((2 * batch, 12), mx.int32)
        ckv = dec.cross_kv(states)
        bias = cross_attention_bias(mask, dt)
        mx.eval(ckv, bias)
        for gemv in (0, 4):
            decoder_module.GEMV_ROWS = gemv
            for mode in ("compiled", "plain"):
                for cross in ("nobias", "bias"):
                    if cross == "bias" and (gemv == 0 or mode == "plain"):
                        continue
                    n = 150
                    cache = (
                        dec.make_cache(n + 8) if mode == "plain" else dec.make_static_cache(n + 8)
                    )
                    tok = mx.full((2 * batch, 4, 1), 2048, mx.int32)
                    t = None
                    for i in range(n):
                        if i == 20:
                            mx.synchronize()
                            t = time.perf_counter()
                        logits = dec(tok, ckv, bias if cross == "bias" else None, cache)
                        tok = mx.argmax(logits[:, :, -1], -1).astype(mx.int32)[:, :, None]
                        mx.async_eval(tok)
                    mx.eval(tok)
                    ms = (time.perf_counter() - t) / (n - 20) * 1000
                    log(f"step_b{batch}_gemv{gemv}_{mode}_{cross}_ops{TAG}", ms)


def large_batch():
    """The parts of a decoding step at batch 64 and 256 with guidance (musicgen-small's shapes,
    float16, 24 layers): self-attention over the cache at three positions for each block size
    of the attention kernel (and without loading a chunk's values with its keys), MLX's SDPA,
    the projections as matmuls, cross-attention, layer norms, sampling and the heads."""
    import importlib

    from musicgen import kernels

    attention = importlib.import_module("musicgen.kernels.attention")
    dt, H, D, L, S, E = mx.float16, 16, 64, 24, 503, 1024
    shapes = [(3072, E), (E, E), (E, E), (E, E), (4096, E), (E, 4096)]
    chosen, preloaded = attention.block_threads, attention.preloads
    for B in (64, 256):
        R = 2 * B
        qkv = (mx.random.normal((R, 1, 3 * H * D)) * 0.3).astype(dt)
        keys, values = mx.zeros((L, R, H, S, D), dt), mx.zeros((L, R, H, S, D), dt)
        mx.eval(qkv, keys, values)
        for p in (100, 250, 450):
            pos = mx.array([p] + [0] * 15, mx.int32)
            variants = [(t, True) for t in (32, 64, 128, 256)] + [(64, False), (256, False)]
            for threads, preload in variants:
                attention.block_threads = lambda blocks, *args, threads=threads: threads
                attention.preloads = lambda head_dim, dtype: preload and preloaded(head_dim, dtype)
                name = f"b{B}_self_attention_threads{threads}{'' if preload else '_nopreload'}"
                log(f"{name}_pos{p}_x24_ms", timeit(lambda: [
                    kernels.cached_attention(qkv, keys, values, pos, scale=D**-0.5, layer=i)[0]
                    for i in range(L)], n=10, warm=2))
            attention.block_threads, attention.preloads = chosen, preloaded
            q = qkv[:, :, :E].reshape(R, H, 1, D)
            k, v = keys[0, :, :, : p + 1], values[0, :, :, : p + 1]
            log(f"b{B}_sdpa_pos{p}_x24_ms", timeit(lambda: [
                mx.fast.scaled_dot_product_attention(q, k, v, scale=D**-0.5) for _ in range(L)],
                n=10, warm=2))
        keys = values = None  # free the caches before the next batch
        weights = [(mx.random.normal(shape) * 0.02).astype(dt) for shape in shapes]
        xs = {n: (mx.random.normal((R, 1, n)) * 0.3).astype(dt) for n in (E, 4096)}
        log(f"b{B}_projections_3d_x24_ms", timeit(lambda: [
            xs[w.shape[1]] @ w.T for _ in range(L) for w in weights], n=10, warm=2))
        log(f"b{B}_projections_2d_x24_ms", timeit(lambda: [
            xs[w.shape[1]].reshape(R, -1) @ w.T for _ in range(L) for w in weights], n=10, warm=2))
        text = (mx.random.normal((R, H, 24, D)) * 0.3).astype(dt)
        log(f"b{B}_cross_attention_x24_ms", timeit(lambda: [
            kernels.attention(xs[E], text, text, scale=D**-0.5) for _ in range(L)], n=10, warm=2))
        w, b = mx.ones((E,), dt), mx.zeros((E,), dt)
        log(f"b{B}_layer_norm_x72_ms", timeit(lambda: [
            mx.fast.layer_norm(xs[E], w, b, 1e-5) for _ in range(3 * L)], n=10, warm=2))
        logits = mx.random.normal((R, 4, 2048))
        row_keys = mx.stack([mx.random.key(i) for i in range(B)])
        fixed = mx.full((B, 4), -1, mx.int32)
        log(f"b{B}_sample_ms", timeit(lambda: kernels.sample(
            logits, row_keys, fixed, guidance_scale=3.0, temperature=1.0, top_k=250), n=10))
        heads = [(mx.random.normal((2048, E)) * 0.02).astype(dt) for _ in range(4)]
        log(f"b{B}_heads_ms", timeit(lambda: [xs[E] @ h.T for h in heads], n=10))


if "--large-batch" in sys.argv:
    large_batch()
    with open(os.path.join(OUT, "probe_large_batch.json"), "w") as f:
        json.dump(results, f, indent=1)
    results.clear()

if "--micro" in sys.argv:
    log("device", str(mx.default_device()) + " mlx " + mx.__version__)
    micro()
if "--steps" in sys.argv:
    steps()

if results:
    with open(
        os.path.join(OUT, f"probe_{TAG}{'_micro' if '--micro' in sys.argv else ''}.json"), "w"
    ) as f:
        json.dump(results, f, indent=1)


def choose():
    import glob

    steps = {}
    for path in glob.glob(os.path.join(OUT, "probe_*.json")):
        if path.endswith("_micro.json"):
            continue
        with open(path) as f:
            steps.update(json.load(f))
    best = None
    for ops in sorted({k.rsplit("_ops", 1)[1] for k in steps}):
        for gemv in (0, 4):
            key = f"step_b1_gemv{gemv}_compiled_nobias_ops{ops}"
            key16 = f"step_b16_gemv{gemv}_compiled_nobias_ops{ops}"
            if key in steps and key16 in steps:
                score = steps[key] + 0.25 * steps[key16]
                if best is None or score < best[0]:
                    best = (score, ops, gemv)
    print(best[1], best[2])


if "--choose" in sys.argv:
    choose()
