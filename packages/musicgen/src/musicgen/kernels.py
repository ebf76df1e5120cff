"""Fused CUDA kernels for the decoder's compiled decoding step.

On CUDA a decoding step of a few rows is bound by the number of kernels it launches, not by the
bytes it reads, so the compiled path (``StaticCache``) replaces each layer's ~20 small kernels
with 8 (``docs/performance.md``):

- ``fused_linear``: layer norm + matrix-vector product (+ activation) (+ residual) in one kernel,
  for up to ``MAX_ROWS`` rows (batch x CFG branches x positions).
- ``cached_attention``: self-attention of a few query positions with an online softmax. It
  reads the past keys and values from the cache, the new ones from the fused projection, and
  writes the new ones into the cache *in place*: no slice update, no copy of the cache, no
  mask. ``attention`` is the same kernel for cross-attention.

The in-place write goes through MLX's input pointer: the cache buffers are arrays the
``StaticCache`` owns for the whole generation and that nothing else reads or writes. MLX does
not see the write, so the order of the calls on one cache comes from the data: each call
outputs the next position, and the next call on that layer's cache takes it as input.

Elsewhere (CPU, Metal) and for shapes the kernels do not cover, the decoder keeps its plain MLX
operations; ``MUSICGEN_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache

import mlx.core as mx
import mlx.nn as nn

MAX_ROWS = 8  # rows up to which a matrix-vector kernel beats a matrix product
_STAGED_BYTES = 40 * 1024  # shared memory for the staged input rows (static, < 48 KB)
_THREADS = 256  # 8 warps per block
_DTYPES = (mx.float16, mx.bfloat16, mx.float32)

_ACTIVATIONS: dict[Callable, int] = {nn.gelu: 1, nn.relu: 2, nn.gelu_approx: 3, nn.silu: 4}

_HEADER = """
template <typename T> __device__ inline float to_float(T v);
template <> __device__ inline float to_float<float>(float v) { return v; }
template <> __device__ inline float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ inline float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T> __device__ inline T from_float(float v);
template <> __device__ inline float from_float<float>(float v) { return v; }
template <> __device__ inline __half from_float<__half>(float v) { return __float2half(v); }
template <> __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
// 16 bytes of T: one vector load.
template <typename T> struct alignas(16) Pack { T v[16 / sizeof(T)]; };
template <typename T> __device__ inline Pack<T> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T>*>(p);
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float activate(float v, int kind) {
  switch (kind) {
    case 1: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    case 2: return fmaxf(v, 0.0f);
    case 3: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case 4: return v / (1.0f + expf(-v));
    default: return v;
  }
}
"""

# y[r, n] = act(sum_k xn[r, k] w[n, k]) (+ res[r, n]), xn = layer_norm(x) with HAS_NORM.
# One warp per output column n; each lane holds its slice of w's row n in registers, loaded
# before the block stages (and normalizes) the R input rows in shared memory.
_LINEAR = """
  constexpr int VEC = 16 / sizeof(T);
  constexpr int CHUNKS = K / (32 * VEC);
  constexpr int WARPS = THREADS / 32;
  __shared__ alignas(16) T xs[R * K];
  __shared__ float stats[R][2];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = w_shape[0];
  const int n = blockIdx.x * WARPS + warp;
  Pack<T> wv[CHUNKS];
  if (n < N) {
    const T* row = w + (size_t)n * K;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) wv[c] = load_pack(row + (c * 32 + lane) * VEC);
  }
  for (int i = threadIdx.x; i < R * K / VEC; i += THREADS) {
    *reinterpret_cast<Pack<T>*>(xs + i * VEC) = load_pack(x + i * VEC);
  }
  __syncthreads();
#if HAS_NORM
  if (warp < R) {
    float sum = 0.0f;
    for (int k = lane; k < K; k += 32) sum += to_float(xs[warp * K + k]);
    const float mean = warp_sum(sum) / K;
    float sq = 0.0f;
    for (int k = lane; k < K; k += 32) {
      const float d = to_float(xs[warp * K + k]) - mean;
      sq += d * d;
    }
    const float var = warp_sum(sq) / K;
    if (lane == 0) {
      stats[warp][0] = mean;
      stats[warp][1] = rsqrtf(var + EPS);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < R * K; i += THREADS) {
    const int r = i / K, k = i - r * K;
    const float v = (to_float(xs[i]) - stats[r][0]) * stats[r][1];
    xs[i] = from_float<T>(v * to_float(norm_w[k]) + to_float(norm_b[k]));
  }
  __syncthreads();
#endif
  if (n >= N) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
    const int k0 = (c * 32 + lane) * VEC;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const Pack<T> xv = *reinterpret_cast<const Pack<T>*>(xs + r * K + k0);
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[r] += to_float(wv[c].v[e]) * to_float(xv.v[e]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = activate(warp_sum(acc[r]), ACT);
#if HAS_RESIDUAL
    v += to_float(res[(size_t)r * N + n]);
#endif
    if (lane == 0) y[(size_t)r * N + n] = from_float<T>(v);
  }
"""

# One block per (row b, query i, head h); 8 warps share the keys, each with an online softmax
# (lane j scores key base + j, then the warp accumulates the values with its lanes across the
# head dimension); the warps' partial results are merged at the end.
# SELF: queries, new keys and values come from the fused projection qkv (B, L, 3, H, D); keys
# before `position` come from the cache, and block (b, i, h) writes key/value `position + i`.
_ATTENTION = """
  constexpr int WARPS = THREADS / 32;
  constexpr int PER_LANE = D / 32;
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int H = keys_shape[1], S = keys_shape[2];
  const int L = q_shape[1];
  const int h = blockIdx.x % H;
  const int i = (blockIdx.x / H) % L;
  const int b = blockIdx.x / (H * L);
#if SELF
  const int pos = position[0];
  const int count = pos + i + 1;
  const T* query = q + ((size_t)(b * L + i) * 3 * H + h) * D;
  const size_t new_stride = (size_t)3 * H * D;  // between positions of the new keys
  const T* new_keys = q + ((size_t)(b * L) * 3 * H + H + h) * D;
  const T* new_values = new_keys + (size_t)H * D;
#else
  const int count = S;
  const T* query = q + ((size_t)(b * L + i) * H + h) * D;
#endif
  const size_t head = (size_t)(b * H + h) * S * D;
  const T* past_keys = keys + head;
  const T* past_values = values + head;
#if SELF
  if (blockIdx.x == 0 && threadIdx.x == 0) next_position[0] = pos + L;
  if (threadIdx.x < D) {  // the new key and value, written in place (see musicgen.kernels)
    const size_t at = (size_t)(pos + i) * D + threadIdx.x;
    const size_t from = (size_t)i * new_stride + threadIdx.x;
    const_cast<T*>(past_keys)[at] = new_keys[from];
    const_cast<T*>(past_values)[at] = new_values[from];
  }
#endif
  float qf[D];
#pragma unroll
  for (int c = 0; c < D / VEC; ++c) {
    const Pack<T> p = load_pack(query + c * VEC);
#pragma unroll
    for (int e = 0; e < VEC; ++e) qf[c * VEC + e] = to_float(p.v[e]) * SCALE;
  }
  float m = -INFINITY, l = 0.0f, acc[PER_LANE];
#pragma unroll
  for (int e = 0; e < PER_LANE; ++e) acc[e] = 0.0f;
  for (int base = warp * 32; base < count; base += THREADS) {
    const int t = base + lane;
    float s = -INFINITY;
    if (t < count) {
#if SELF
      const T* key = t < pos ? past_keys + (size_t)t * D : new_keys + (t - pos) * new_stride;
#else
      const T* key = past_keys + (size_t)t * D;
#endif
      float dot = 0.0f;
#pragma unroll
      for (int c = 0; c < D / VEC; ++c) {
        const Pack<T> p = load_pack(key + c * VEC);
#pragma unroll
        for (int e = 0; e < VEC; ++e) dot += qf[c * VEC + e] * to_float(p.v[e]);
      }
#if HAS_BIAS
      dot += to_float(bias[(size_t)b * S + t]);
#endif
      s = dot;
    }
    const float m_new = fmaxf(m, warp_max(s));
    const float correction = __expf(m - m_new);
    const float p = t < count ? __expf(s - m_new) : 0.0f;
    l = l * correction + warp_sum(p);
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) acc[e] *= correction;
    const int n = min(32, count - base);
    for (int j = 0; j < n; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const int tj = base + j;
#if SELF
      const T* value = tj < pos ? past_values + (size_t)tj * D
                                : new_values + (tj - pos) * new_stride;
#else
      const T* value = past_values + (size_t)tj * D;
#endif
#pragma unroll
      for (int e = 0; e < PER_LANE; ++e) acc[e] += pj * to_float(value[lane * PER_LANE + e]);
    }
    m = m_new;
  }
  __shared__ float part_m[WARPS], part_l[WARPS], part_acc[WARPS][D];
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < PER_LANE; ++e) part_acc[warp][lane * PER_LANE + e] = acc[e];
  __syncthreads();
  if (threadIdx.x < D) {
    float top = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) top = fmaxf(top, part_m[w]);
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      const float f = part_m[w] == -INFINITY ? 0.0f : __expf(part_m[w] - top);
      num += part_acc[w][threadIdx.x] * f;
      den += part_l[w] * f;
    }
    out[((size_t)(b * L + i) * H + h) * D + threadIdx.x] = from_float<T>(num / den);
  }
"""


def available() -> bool:
    """Whether the fused kernels can run: MLX's CUDA backend on the default device, and
    ``MUSICGEN_KERNELS`` is not ``0``."""
    if os.environ.get("MUSICGEN_KERNELS", "1") == "0":
        return False
    return mx.cuda.is_available() and mx.default_device() == mx.gpu


@cache
def _kernel(kind: str, **defines: float) -> object:
    """The compiled kernel ``kind`` with these ``#define`` values (ints, or floats as
    ``float`` literals); MLX keeps one build per kernel name and template arguments."""
    header = "".join(
        f"#define {name} {value!r}f\n" if isinstance(value, float) else f"#define {name} {value}\n"
        for name, value in defines.items()
    )
    tag = "_".join(str(v).replace(".", "p").replace("-", "m") for v in defines.values())
    if kind == "linear":
        inputs, outputs = ["x", "w"], ["y"]
        inputs += ["norm_w", "norm_b"] if defines["HAS_NORM"] else []
        inputs += ["res"] if defines["HAS_RESIDUAL"] else []
        source = _LINEAR
    else:
        inputs, outputs = ["q", "keys", "values"], ["out"]
        inputs += ["position"] if defines["SELF"] else []
        outputs += ["next_position"] if defines["SELF"] else []
        inputs += ["bias"] if defines["HAS_BIAS"] else []
        source = _ATTENTION
    return mx.fast.cuda_kernel(
        name=f"musicgen_{kind}_{tag}",
        input_names=inputs,
        output_names=outputs,
        source=source,
        header=header + _HEADER,
    )


def linear_fits(x: mx.array, layer: nn.Module) -> bool:
    """Whether ``fused_linear`` covers ``layer`` applied to ``x`` (..., in)."""
    if type(layer) is not nn.Linear or "bias" in layer or x.dtype not in _DTYPES:
        return False
    weight = layer.weight
    rows, width = x.size // x.shape[-1], x.shape[-1]
    vector = 16 // x.dtype.size
    return (
        weight.dtype == x.dtype
        and weight.shape[1] == width
        and rows <= MAX_ROWS
        and width % (32 * vector) == 0
        and rows * width * x.dtype.size <= _STAGED_BYTES
    )


def fused_linear(
    x: mx.array,
    layer: nn.Linear,
    *,
    norm: nn.LayerNorm | None = None,
    activation: Callable | None = None,
    residual: mx.array | None = None,
) -> mx.array:
    """``activation(layer(norm(x))) + residual`` in one kernel, where ``linear_fits``.

    ``norm`` is a LayerNorm with weight and bias; ``activation`` one of gelu, relu,
    gelu_approx, silu or None.
    """
    weight = layer.weight
    rows, width, out_dim = x.size // x.shape[-1], x.shape[-1], weight.shape[0]
    inputs = [x, weight]
    if norm is not None:
        inputs += [norm.weight, norm.bias]
    if residual is not None:
        inputs.append(residual)
    kernel = _kernel(
        "linear",
        HAS_NORM=int(norm is not None),
        HAS_RESIDUAL=int(residual is not None),
        EPS=float(norm.eps) if norm is not None else 0.0,
    )
    warps = _THREADS // 32
    (y,) = kernel(
        inputs=inputs,
        template=[
            ("T", x.dtype),
            ("K", width),
            ("R", rows),
            ("THREADS", _THREADS),
            ("ACT", _ACTIVATIONS[activation] if activation is not None else 0),
        ],
        grid=(-(-out_dim // warps) * _THREADS, 1, 1),
        threadgroup=(_THREADS, 1, 1),
        output_shapes=[(*x.shape[:-1], out_dim)],
        output_dtypes=[x.dtype],
    )
    return y


def attention_fits(head_dim: int, dtype: mx.Dtype) -> bool:
    """Whether ``attention`` covers heads of ``head_dim`` in ``dtype``."""
    return dtype in _DTYPES and head_dim % 32 == 0 and head_dim <= 128


def activation_fits(activation: Callable | None) -> bool:
    """Whether ``fused_linear`` can apply ``activation`` (None: no activation)."""
    return activation is None or activation in _ACTIVATIONS


def attention(
    queries: mx.array,
    keys: mx.array,
    values: mx.array,
    *,
    scale: float,
    bias: mx.array | None = None,
) -> mx.array:
    """Cross-attention of L query positions per row -> (B, L, H x D).

    ``queries`` (B, L, H x D) attend to all S ``keys``/``values`` (B, H, S, D), with the
    additive ``bias`` (B, 1, 1, S) when given.
    """
    return _attention(queries, keys, values, scale, bias=bias)[0]


def cached_attention(
    qkv: mx.array, keys: mx.array, values: mx.array, position: mx.array, *, scale: float
) -> tuple[mx.array, mx.array]:
    """Self-attention over a cache -> ((B, L, H x D) output, next position).

    ``qkv`` is the fused projection (B, L, 3 x H x D) of L new positions; query i attends
    causally to the cache's first ``position`` (int32 (1,)) keys and the new keys up to its
    own, and the new keys and values are written into ``keys``/``values`` (B, H, S, D) at
    ``position`` .. ``position + L - 1`` in place. The next position (``position + L``) is
    an output of the same kernel: the next call on this cache must take it, which orders that
    call's reads after this call's writes.
    """
    return tuple(_attention(qkv, keys, values, scale, position=position))


def _attention(queries, keys, values, scale, *, position=None, bias=None) -> list[mx.array]:
    batch, heads, _, head_dim = keys.shape
    length = queries.shape[1]
    inputs = [queries, keys, values]
    shapes, dtypes = [(batch, length, heads * head_dim)], [queries.dtype]
    if position is not None:
        inputs.append(position)
        shapes.append((1,))
        dtypes.append(mx.int32)
    if bias is not None:
        inputs.append(bias)
    kernel = _kernel(
        "attention",
        SELF=int(position is not None),
        HAS_BIAS=int(bias is not None),
        SCALE=float(scale),
    )
    return kernel(
        inputs=inputs,
        template=[("T", queries.dtype), ("D", head_dim), ("THREADS", _THREADS)],
        grid=(batch * length * heads * _THREADS, 1, 1),
        threadgroup=(_THREADS, 1, 1),
        output_shapes=shapes,
        output_dtypes=dtypes,
    )
