"""MLX's CPU matrix products by BLAS, at the shapes that decide MusicGen's and BERT's speed.

    python benchmarks/bench_cpu_blas.py            # every BLAS found, each in its own process
    python benchmarks/bench_cpu_blas.py --layer    # also one all-MiniLM-L6-v2 layer, by part
    python benchmarks/bench_cpu_blas.py --cache    # also a MusicGen step's cache attention
    python benchmarks/bench_cpu_blas.py --bfloat16 # also MKL's bfloat16 product at those shapes

1. Products: musicgen-small's 24 fc1 weights (4096 x 1024 float32, 403 MB: more than any
   cache) times 2 rows (batch 1 with guidance), one product per weight, the weight as the left
   operand ((W x^T)^T) and as the right one (x W^T), in GB/s of weights streamed. MLX runs
   once per BLAS that rag_core can route (OpenBLAS from scipy-openblas32; MKL where the `mkl`
   package is installed), each in a fresh process (`MLX_RAG_BLAS=openblas|mkl`); torch's
   `F.linear` (its own MKL) runs in another, when torch is installed.
2. `--bfloat16` (where MKL is installed): the same products through libmkl_rt directly, float32
   (`cblas_sgemm`) against bfloat16 weights and rows (`cblas_gemm_bf16bf16f32`, float32 out),
   each also with the weights packed once in MKL's layout (`cblas_*_pack`, then `*_compute`):
   whether half the bytes would stream in half the time on this CPU.
3. `--layer`: one BERT layer of all-MiniLM-L6-v2's shapes at 32 x 160 tokens on MLX's CPU
   stream, by part (the products, GELU, the attention with its NumPy softmax, layer norms).

Prints Markdown tables (docs/performance.md, "MLX on the Linux CPU").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

LAYERS, ROWS, OUT_DIM, IN_DIM = 24, 2, 4096, 1024


def best_ms(run, repeats: int = 10) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def products_mlx() -> dict:
    import mlx.core as mx
    import numpy as np
    import rag_core

    rng = np.random.default_rng(0)
    weights = [mx.array(rng.standard_normal((OUT_DIM, IN_DIM), dtype=np.float32) * 0.02)
               for _ in range(LAYERS)]  # fmt: skip
    x = mx.array(rng.standard_normal((ROWS, IN_DIM), dtype=np.float32))
    mx.eval(weights, x)
    left = best_ms(lambda: mx.eval([(w @ x.T).T for w in weights]))
    right = best_ms(lambda: mx.eval([x @ w.T for w in weights]))
    status = rag_core.blas_status()
    return {"impl": f"MLX on {status.name}", "threads": status.threads, "left_ms": left,
            "right_ms": right}


def products_torch() -> dict:
    import torch

    weights = [torch.randn(OUT_DIM, IN_DIM) * 0.02 for _ in range(LAYERS)]
    x = torch.randn(ROWS, IN_DIM)
    with torch.no_grad():
        right = best_ms(lambda: [torch.nn.functional.linear(x, w) for w in weights])
    return {"impl": f"torch {torch.__version__} `F.linear`", "threads": torch.get_num_threads(),
            "left_ms": None, "right_ms": right}


def layer_parts() -> list[tuple[str, float]]:
    import mlx.core as mx
    import mlx.nn as nn
    import rag_core  # noqa: F401  (routes MLX's BLAS)
    from rag_core.embeddings.ops import _gelu, attention, gelu

    batch, length, dim, heads, hidden = 32, 160, 384, 12, 1536
    x, h = mx.random.normal((batch, length, dim)), mx.random.normal((batch, length, hidden))
    q = mx.random.normal((batch, heads, length, dim // heads))
    mask = mx.zeros((batch, 1, 1, length))
    square, up, down, norm = nn.Linear(dim, dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim), \
        nn.LayerNorm(dim)  # fmt: skip
    mx.eval(x, h, q, mask, square.parameters(), up.parameters(), down.parameters(),
            norm.parameters())  # fmt: skip
    parts = [("4 products 384 -> 384", lambda: [square(x) for _ in range(4)]),
             ("product 384 -> 1536", lambda: up(x)), ("product 1536 -> 384", lambda: down(h)),
             ("GELU on 32 x 160 x 1536 (NumPy, in place)", lambda: gelu(h)),
             ("the same, MLX's compiled kernel", lambda: _gelu(h)),
             ("attention (12 heads, NumPy softmax)", lambda: attention(q, q, q, 0.125, mask)),
             ("2 layer norms", lambda: [norm(x), norm(x)])]  # fmt: skip
    return [(name, best_ms(lambda run=run: mx.eval(run()), 5)) for name, run in parts]


def mkl_bfloat16() -> list[tuple[str, float, int]]:
    """MKL's float32 and bfloat16 products, 2 rows times each of the 24 fc1 weights (x W^T):
    (name, ms, bytes a weight element takes), each as a plain call and with the weights packed
    once beforehand (``cblas_*_pack``: MKL's own layout, as a model's weights could be kept)."""
    import ctypes

    import numpy as np
    from rag_core.blas import _mkl_path

    mkl = ctypes.CDLL(_mkl_path())
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    signatures = {
        "cblas_sgemm": [i] * 6 + [f, p, i, p, i, f, p, i],
        "cblas_gemm_bf16bf16f32": [i] * 6 + [f, p, i, p, i, f, p, i],
        "cblas_sgemm_pack": [i] * 6 + [f, p, i, p],
        "cblas_gemm_bf16bf16f32_pack": [i] * 6 + [p, i, p],
        "cblas_sgemm_compute": [i] * 6 + [p, i, p, i, f, p, i],
        "cblas_gemm_bf16bf16f32_compute": [i] * 6 + [f, p, i, p, i, f, p, i],
    }
    for name, arguments in signatures.items():
        getattr(mkl, name).argtypes = arguments
    for name in ("cblas_sgemm_pack_get_size", "cblas_gemm_bf16bf16f32_pack_get_size"):
        getattr(mkl, name).argtypes, getattr(mkl, name).restype = [i] * 4, ctypes.c_size_t
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((OUT_DIM, IN_DIM), dtype=np.float32) * 0.02
               for _ in range(LAYERS)]  # fmt: skip
    x = rng.standard_normal((ROWS, IN_DIM), dtype=np.float32)
    halves = [(w.view(np.uint32) >> 16).astype(np.uint16) for w in weights]  # bfloat16 bits
    x_half = (x.view(np.uint32) >> 16).astype(np.uint16)
    out = np.zeros((ROWS, OUT_DIM), np.float32)
    row_major, plain, transposed, packed, b_matrix = 101, 111, 112, 151, 162
    shape = (ROWS, OUT_DIM, IN_DIM)

    def pack(name: str, matrices: list, dtype, *alpha) -> list:
        size = getattr(mkl, f"{name}_pack_get_size")(b_matrix, *shape)
        out_packs = []
        for w in matrices:
            buffer = np.zeros(size // np.dtype(dtype).itemsize + 64, dtype)
            getattr(mkl, f"{name}_pack")(row_major, b_matrix, transposed, *shape, *alpha,
                                         w.ctypes.data, IN_DIM, buffer.ctypes.data)  # fmt: skip
            out_packs.append(buffer)
        return out_packs

    single_packs = pack("cblas_sgemm", weights, np.float32, 1.0)
    half_packs = pack("cblas_gemm_bf16bf16f32", halves, np.uint16)

    def products(function, rows, matrices, layout=transposed, alpha=(1.0,)):
        for w in matrices:
            function(row_major, plain, layout, *shape, *alpha, rows.ctypes.data, IN_DIM,
                     w.ctypes.data, IN_DIM, 0.0, out.ctypes.data, OUT_DIM)  # fmt: skip

    runs = [
        ("float32 (cblas_sgemm)", 4, lambda: products(mkl.cblas_sgemm, x, weights)),
        ("float32, packed (cblas_sgemm_compute)", 4,
         lambda: products(mkl.cblas_sgemm_compute, x, single_packs, packed, ())),
        ("bfloat16 (cblas_gemm_bf16bf16f32)", 2,
         lambda: products(mkl.cblas_gemm_bf16bf16f32, x_half, halves)),
        ("bfloat16, packed (cblas_gemm_bf16bf16f32_compute)", 2,
         lambda: products(mkl.cblas_gemm_bf16bf16f32_compute, x_half, half_packs, packed)),
    ]  # fmt: skip
    return [(name, best_ms(run), size) for name, size, run in runs]


def cache_attention() -> list[tuple[str, float]]:
    """musicgen-small's self-attention of one decoding step (2 rows, 16 heads of 64, 24 layers)
    at position 250 of a 10 s cache (503 positions): the whole cache under a mask (the
    compiled step's fixed-shape cache) against the positions written so far."""
    import mlx.core as mx
    import rag_core  # noqa: F401

    rows, heads, length, dim, layers, position = 2, 16, 503, 64, 24, 250
    q = mx.random.normal((rows, heads, 1, dim))
    k, v = (mx.random.normal((rows, heads, length, dim)) for _ in "kv")
    mask = mx.where(mx.arange(length) <= position, 0, -mx.inf).astype(mx.float32)[None]
    written_k, written_v = k[:, :, : position + 1], v[:, :, : position + 1]
    mx.eval(q, k, v, mask, written_k, written_v)
    sdpa = mx.fast.scaled_dot_product_attention
    whole = best_ms(lambda: mx.eval([sdpa(q, k, v, scale=0.125, mask=mask)
                                     for _ in range(layers)]))  # fmt: skip
    written = best_ms(lambda: mx.eval([sdpa(q, written_k, written_v, scale=0.125)
                                       for _ in range(layers)]))  # fmt: skip
    return [("the whole cache under a mask", whole), ("the positions written so far", written)]


def child(name: str, blas: str | None = None) -> Any:
    """Run measurement ``name`` (a key of CHILDREN) in a fresh process, MLX on ``blas`` if
    given; its JSON, or {"error": [last line of stderr]}."""
    env = dict(os.environ, **({"MLX_RAG_BLAS": blas} if blas else {}))
    done = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True,
                          text=True, env=env, timeout=900)  # fmt: skip
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_parts(title: str, header: str, parts: Any) -> None:
    """A child's (name, ms) pairs as a Markdown table under ``title``."""
    print(f"\n{title}:\n")
    if isinstance(parts, dict):
        print(f"failed: {parts['error']}")
        return
    print(f"| {header} | ms |\n|---|---:|")
    for name, ms in parts:
        print(f"| {name} | {ms:.1f} |")


CHILDREN = {"products": products_mlx, "torch": products_torch, "layer": layer_parts,
            "cache": cache_attention, "bfloat16": mkl_bfloat16}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", action="store_true", help="also one BERT layer, by part")
    parser.add_argument("--cache", action="store_true",
                        help="also a MusicGen step's self-attention over its cache")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also MKL's bfloat16 product at the same shapes (needs mkl)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return 0

    from importlib import util

    from rag_core.blas import _mkl_path

    kinds = ["openblas"] + ["mkl"] * (_mkl_path() is not None)
    kinds += ["torch"] * (util.find_spec("torch") is not None)
    gigabytes = LAYERS * OUT_DIM * IN_DIM * 4 / 1e9
    print(f"{LAYERS} weights {OUT_DIM} x {IN_DIM} float32 ({gigabytes * 1000:.0f} MB) times "
          f"{ROWS} rows; best of 10; load average {os.getloadavg()[0]:.1f}\n")
    print("| implementation | threads | W x^T (weight left) | x W^T (weight right) |")
    print("|---|---:|---:|---:|")
    for kind in kinds:
        row = child("torch") if kind == "torch" else child("products", blas=kind)
        if "error" in row:
            print(f"| {kind} | | failed: {row['error']} | |")
            continue
        cells = [f"{ms:.1f} ms ({gigabytes / ms * 1000:.1f} GB/s)" if ms else ""
                 for ms in (row["left_ms"], row["right_ms"])]  # fmt: skip
        print(f"| {row['impl']} | {row['threads']} | {cells[0]} | {cells[1]} |")
    if args.layer:
        for kind in kinds[:2] if "mkl" in kinds else kinds[:1]:
            print_parts(f"One all-MiniLM-L6-v2 layer at 32 x 160 tokens, MLX on {kind}", "part",
                        child("layer", blas=kind))  # fmt: skip
    if args.bfloat16 and "mkl" in kinds:
        rows = child("bfloat16")
        print(f"\nMKL directly, the same {LAYERS} products (weight right):\n")
        if isinstance(rows, dict):
            print(f"failed: {rows['error']}")
        else:
            print("| weights and rows | ms | GB/s of weights |\n|---|---:|---:|")
            for name, ms, size in rows:
                print(f"| {name} | {ms:.1f} | {LAYERS * OUT_DIM * IN_DIM * size / ms / 1e6:.1f} |")
    elif args.bfloat16:
        print("\n--bfloat16: MKL is not installed (pip install rag-core[mkl])")
    if args.cache:
        print_parts("A MusicGen step's self-attention, 24 layers, position 250 of 503",
                    "keys and values read", child("cache"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
