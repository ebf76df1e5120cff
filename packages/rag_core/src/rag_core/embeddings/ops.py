"""The encoder's activation and attention, fast on every MLX device.

MLX's CPU kernels evaluate ``erf`` and ``exp`` one element at a time (on x86-64 about 25 and
11 ns per element, against 0.5 ns for NumPy's vectorized exp), and a BERT layer evaluates erf
on every hidden unit (GELU) and exp on every attention score (softmax): at all-MiniLM-L6-v2's
shapes they were over half of an embedding on the CPU once the matrix products ran on OpenBLAS.

- ``gelu``: erf by the rational approximation of ``rag_core.activations`` (|error| < 2e-6),
  compiled into one fused kernel; on the CPU in float32 the same operations in NumPy, in place,
  a cache-sized block at a time (2.6-3.5x the compiled kernel there, `bench_cpu_blas.py --layer`).
- ``attention``: on the CPU device the softmax runs in NumPy, in place on MLX's buffer;
  elsewhere ``mx.fast.scaled_dot_product_attention``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from rag_core.activations import ERF_P, ERF_Q, SQRT_HALF, gelu_rational

# per shape: 2.5x faster than shapeless=True here (a retrace per shape is cheap)
_gelu = mx.compile(gelu_rational)


def gelu(x: mx.array) -> mx.array:
    """GELU in the exact (erf) form, BERT's "gelu". On the CPU device, in float32, it is
    computed by NumPy in place on MLX's buffer, a cache-sized block at a time: the same
    float32 operations in the same order (equal results), faster than MLX's compiled kernel
    (32 x 160 x 1536 values on 2 cores: 29-33 ms against 87-104 ms). There ``x``'s
    buffer becomes the result: pass an array nothing else uses (a product's fresh output)."""
    if mx.default_device() != mx.cpu or x.dtype != mx.float32:
        return _gelu(x)
    mx.eval(x)
    values = np.asarray(x)  # MLX's buffer, no copy
    if not (values.flags.c_contiguous and values.flags.writeable):
        return _gelu(x)
    _gelu_in_place(values.reshape(-1))
    return x


def _gelu_in_place(values: np.ndarray, block: int = 1 << 15) -> None:
    scratch = np.empty((4, block), np.float32)  # erf's argument, its square, P and Q
    for start in range(0, values.size, block):
        chunk = values[start : start + block]
        t, t2, p, q = scratch[:, : chunk.size]
        np.multiply(chunk, np.float32(SQRT_HALF), out=t)
        np.clip(t, -4.0, 4.0, out=t)
        np.multiply(t, t, out=t2)
        p.fill(ERF_P[0])
        for c in ERF_P[1:]:
            p *= t2
            p += np.float32(c)
        q.fill(ERF_Q[0])
        for c in ERF_Q[1:]:
            q *= t2
            q += np.float32(c)
        p *= t
        p /= q  # erf(x / sqrt(2))
        p += 1.0
        p *= 0.5
        chunk *= p


ACTIVATIONS = {"gelu": gelu, "gelu_new": nn.gelu_approx, "relu": nn.relu, "silu": nn.silu}


def attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None
) -> mx.array:
    """softmax(q k^T * scale + mask) v over (B, heads, L, head_dim) arrays."""
    if mx.default_device() != mx.cpu or q.dtype != mx.float32:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if mask is not None:
        scores = scores + mask
    mx.eval(scores)
    weights = np.asarray(scores)  # MLX's buffer, no copy; nothing else holds `scores`
    weights -= weights.max(axis=-1, keepdims=True)
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return scores @ v  # `scores` now holds the softmax
