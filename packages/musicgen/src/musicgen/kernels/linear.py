"""Layer norm + matrix-vector product (+ activation) (+ residual) in one kernel, for a few rows.

One warp per output column; each lane holds its slice of the weight row in registers, loaded
before the block stages (and normalizes) the input rows in shared memory. Float weights
(``nn.Linear``) or 4-/8-bit affine quantized ones (``nn.QuantizedLinear``: each group of
``group_size`` weights is ``scale * q + bias``), read as packed words: a 4-bit layer reads a
quarter of the bytes of a float16 one. Accumulation is float32 in every dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn

from musicgen.config import gelu
from musicgen.kernels.compiler import DTYPES, THREADS, build

MAX_ROWS = 8  # rows up to which a matrix-vector kernel beats a matrix product
STAGED_BYTES = 40 * 1024  # shared memory for the staged input rows (static, < 48 KB)
ACTIVATIONS: dict[Callable, int] = {nn.gelu: 1, gelu: 1, nn.relu: 2, nn.gelu_approx: 3,
                                    nn.silu: 4}  # fmt: skip

# Device helpers of the kernels below (and of the heads in musicgen.kernels.sampling).
HELPERS = """
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

# Stages R rows of x (K wide, type T) in shared memory `xs`, layer-normalized with HAS_NORM (in
# float32, rounded to T as MLX's LayerNorm in T would be).
STAGE = """
  __shared__ alignas(16) T xs[R * K];
  __shared__ float stats[R][2];
  for (int i = threadIdx.x; i < R * K / (int)(16 / sizeof(T)); i += THREADS) {
    *reinterpret_cast<Pack<T>*>(xs + i * (16 / sizeof(T))) = load_pack(x + i * (16 / sizeof(T)));
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
"""

# y[r, n] = act(sum_k xn[r, k] w[n, k]) (+ res[r, n]) for NCOLS columns n, float weights of
# type W, output type O; the row of column n is WEIGHT_ROW(n) (musicgen.kernels.sampling uses the
# same body for the heads: float32 weights, one array per codebook, float32 output).
LINEAR = """
  constexpr int VEC = 16 / sizeof(W);
  constexpr int CHUNKS = K / (32 * VEC);
  constexpr int WARPS = THREADS / 32;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = NCOLS;
  const int n = blockIdx.x * WARPS + warp;
  Pack<W> wv[CHUNKS];
  if (n < N) {
    const W* row = WEIGHT_ROW(n);
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) wv[c] = load_pack(row + (c * 32 + lane) * VEC);
  }
  STAGE_ROWS
  if (n >= N) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
    const int k0 = (c * 32 + lane) * VEC;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if constexpr (sizeof(W) == sizeof(T)) {
        const Pack<T> xv = *reinterpret_cast<const Pack<T>*>(xs + r * K + k0);
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[r] += to_float(wv[c].v[e]) * to_float(xv.v[e]);
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[r] += to_float(wv[c].v[e]) * to_float(xs[r * K + k0 + e]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = activate(warp_sum(acc[r]), ACT);
#if HAS_RESIDUAL
    v += to_float(res[(size_t)r * N + n]);
#endif
    if (lane == 0) y[(size_t)r * N + n] = from_float<O>(v);
  }
""".replace("  STAGE_ROWS\n", STAGE)

# The same with affine quantized weights: w (N, K / EPW) packed words of BITS-bit codes, lowest
# bits first; scales and biases (N, K / GROUP). Each lane reads WPL words per chunk (one vector
# load), all in one group: acc += scale * sum(q x) + bias * sum(x).
QLINEAR = """
  constexpr int EPW = 32 / BITS;
  constexpr int PER = EPW * WPL;
  constexpr int CHUNKS = K / (32 * PER);
  constexpr int GROUPS = K / GROUP;
  constexpr unsigned MASK = (1u << BITS) - 1u;
  constexpr int WARPS = THREADS / 32;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = NCOLS;
  const int n = blockIdx.x * WARPS + warp;
  uint32_t wq[CHUNKS][WPL];
  float ws[CHUNKS], wb[CHUNKS];
  if (n < N) {
    const uint32_t* row = w + (size_t)n * (K / EPW);
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int word = (c * 32 + lane) * WPL;
      if constexpr (WPL == 4) {
        const uint4 v = *reinterpret_cast<const uint4*>(row + word);
        wq[c][0] = v.x; wq[c][1] = v.y; wq[c][2] = v.z; wq[c][3] = v.w;
      } else if constexpr (WPL == 2) {
        const uint2 v = *reinterpret_cast<const uint2*>(row + word);
        wq[c][0] = v.x; wq[c][1] = v.y;
      } else {
        wq[c][0] = row[word];
      }
      const size_t g = (size_t)n * GROUPS + (word * EPW) / GROUP;
      ws[c] = to_float(scales[g]);
      wb[c] = to_float(biases[g]);
    }
  }
  STAGE_ROWS
  if (n >= N) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
    const int k0 = (c * 32 + lane) * PER;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float dot = 0.0f, sum = 0.0f;
#pragma unroll
      for (int i = 0; i < WPL; ++i) {
#pragma unroll
        for (int e = 0; e < EPW; ++e) {
          const float xv = to_float(xs[r * K + k0 + i * EPW + e]);
          dot += (float)((wq[c][i] >> (e * BITS)) & MASK) * xv;
          sum += xv;
        }
      }
      acc[r] += ws[c] * dot + wb[c] * sum;
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
""".replace("  STAGE_ROWS\n", STAGE)


def in_width(layer: nn.Module) -> int:
    """The input width of a Linear or QuantizedLinear."""
    if isinstance(layer, nn.QuantizedLinear):
        return layer.weight.shape[1] * 32 // layer.bits
    return layer.weight.shape[1]


def rows_fit(x: mx.array) -> bool:
    """Whether ``x`` (..., width) has few enough rows to stage for a matrix-vector kernel."""
    rows, width = x.size // x.shape[-1], x.shape[-1]
    vector = 16 // x.dtype.size
    return (
        x.dtype in DTYPES
        and rows <= MAX_ROWS
        and width % (32 * vector) == 0
        and rows * width * x.dtype.size <= STAGED_BYTES
    )


def _words_per_lane(layer: nn.QuantizedLinear, width: int) -> int | None:
    """Packed words each lane reads per chunk (4, 2 or 1), or None where none fits."""
    per_word = 32 // layer.bits
    for words in (4, 2, 1):
        per_lane = per_word * words
        if width % (32 * per_lane) == 0 and layer.group_size % per_lane == 0:
            return words
    return None


def linear_fits(x: mx.array, layer: nn.Module) -> bool:
    """Whether ``fused_linear`` covers ``layer`` applied to ``x`` (..., in)."""
    if "bias" in layer or not rows_fit(x) or in_width(layer) != x.shape[-1]:
        return False
    if type(layer) is nn.Linear:
        return layer.weight.dtype == x.dtype
    return (
        type(layer) is nn.QuantizedLinear
        and getattr(layer, "mode", "affine") == "affine"
        and layer.bits in (4, 8)
        and layer.scales.dtype in DTYPES
        and _words_per_lane(layer, x.shape[-1]) is not None
    )


def activation_fits(activation: Callable | None) -> bool:
    """Whether ``fused_linear`` can apply ``activation`` (None: no activation)."""
    return activation is None or activation in ACTIVATIONS


def fused_linear(
    x: mx.array,
    layer: nn.Linear | nn.QuantizedLinear,
    *,
    norm: nn.LayerNorm | None = None,
    activation: Callable | None = None,
    residual: mx.array | None = None,
) -> mx.array:
    """``activation(layer(norm(x))) + residual`` in one kernel, where ``linear_fits``.

    ``norm`` is a LayerNorm with weight and bias; ``activation`` one of gelu, relu,
    gelu_approx, silu or None.
    """
    rows, width, out_dim = x.size // x.shape[-1], x.shape[-1], layer.weight.shape[0]
    quantized = isinstance(layer, nn.QuantizedLinear)
    inputs = [x, layer.weight] + ([layer.scales, layer.biases] if quantized else [])
    names = ["x", "w"] + (["scales", "biases"] if quantized else [])
    if norm is not None:
        inputs += [norm.weight, norm.bias]
        names += ["norm_w", "norm_b"]
    if residual is not None:
        inputs.append(residual)
        names.append("res")
    defines = {
        "T": x.dtype,
        "K": width,
        "R": rows,
        "NCOLS": out_dim,
        "THREADS": THREADS,
        "ACT": ACTIVATIONS[activation] if activation is not None else 0,
        "HAS_NORM": int(norm is not None),
        "HAS_RESIDUAL": int(residual is not None),
        "EPS": float(norm.eps) if norm is not None else 0.0,
    }
    if quantized:
        source = QLINEAR
        defines |= {"WPL": _words_per_lane(layer, width), "BITS": layer.bits,
                    "GROUP": layer.group_size}  # fmt: skip
    else:
        source = LINEAR
        defines |= {"W": x.dtype, "O": x.dtype, "WEIGHT_ROW(n)": "(w + (size_t)(n) * K)"}
    kernel = build(
        "qlinear" if quantized else "linear",
        source,
        tuple((name, a.dtype) for name, a in zip(names, inputs, strict=True)),
        (("y", x.dtype),),
        header=HELPERS,
        **defines,
    )
    warps = THREADS // 32
    (y,) = kernel(
        inputs,
        output_shapes=[(*x.shape[:-1], out_dim)],
        output_dtypes=[x.dtype],
        grid=(-(-out_dim // warps) * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
    )
    return y
