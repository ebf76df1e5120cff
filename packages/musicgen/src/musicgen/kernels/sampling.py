"""The end of a decoding step in two kernels: the heads, then guidance + sampling.

- ``heads``: the decoder's final layer norm and every codebook's float32 head (the codebooks'
  separate weight arrays, read in place) for a few rows: float32 logits (B, K, 1, V).
- ``sample``: one block per (row, codebook): classifier-free guidance of the two branches'
  logits, temperature, top-k (the k-th largest logit found by a bitwise search over the whole
  row) and the categorical draw as MLX draws it: ``argmax(logits + gumbel)`` with the gumbel
  noise computed in the kernel from MLX's own threefry random bits of the step's key. It also
  splits the key (``mx.random.split``), for one key or for one key per row. So a fused step
  draws exactly the codes of MLX's sampler (``musicgen.sampling``) for the same logits and keys,
  at any batch size, in one kernel instead of dozens (and, with per-row keys, instead of dozens
  per row).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from musicgen.kernels.compiler import THREADS, build
from musicgen.kernels.linear import HELPERS, LINEAR, rows_fit

MAX_VOCAB_PER_THREAD = 32  # logits each of a block's threads holds in registers

SAMPLE = """
  constexpr int WARPS = THREADS / 32;
  const int B = NB, K = NK;
  const int row = blockIdx.x;  // b * K + k
  const int b = row / K, k = row - b * K;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#if PER_ROW
  const uint2 key = make_uint2(key_in[2 * b], key_in[2 * b + 1]);
#else
  const uint2 key = make_uint2(key_in[0], key_in[1]);
#endif
  // mx.random.split(key): bits of shape (2, 2); row 0 is the next key, row 1 this step's.
  const uint2 first = threefry(key, make_uint2(0u, 2u)), second = threefry(key, make_uint2(1u, 3u));
  if (threadIdx.x == 0 && (PER_ROW ? k == 0 : row == 0)) {
    next_key[PER_ROW ? 2 * b : 0] = first.x;
    next_key[PER_ROW ? 2 * b + 1 : 1] = second.x;
  }
  const uint2 step = make_uint2(first.y, second.y);
  float l[VPT];
  const float* cond = logits + (size_t)row * V;
#if GUIDED
  const float* uncond = logits + ((size_t)(B + b) * K + k) * V;
#endif
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int v = threadIdx.x + i * THREADS;
    float c = -INFINITY;  // past the vocabulary: never kept, never drawn
    if (v < V) {
      c = cond[v];
#if GUIDED
      const float u = uncond[v];
      c = u + (c - u) * SCALE;
#endif
#if !GREEDY
      c = c / TEMP;
#endif
    }
    l[i] = c;
  }
#if !GREEDY && TOP_K > 0
  if (TOP_K < V) {  // keep the logits >= the TOP_K-th largest, as musicgen.sampling does
    __shared__ int counts[2][WARPS];
    uint32_t order[VPT];
#pragma unroll
    for (int i = 0; i < VPT; ++i) order[i] = threadIdx.x + i * THREADS < V ? ordered(l[i]) : 0u;
    uint32_t threshold = 0u;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t candidate = threshold | (1u << bit);
      int n = 0;
#pragma unroll
      for (int i = 0; i < VPT; ++i) n += order[i] >= candidate;
      for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
      if (lane == 0) counts[bit & 1][warp] = n;
      __syncthreads();
      int total = 0;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) total += counts[bit & 1][w];
      if (total >= TOP_K) threshold = candidate;
    }
#pragma unroll
    for (int i = 0; i < VPT; ++i) if (order[i] < threshold) l[i] = -INFINITY;
  }
#endif
  float best = -INFINITY;
  int best_index = 0x7fffffff;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int v = threadIdx.x + i * THREADS;
    if (v >= V) break;
    float s = l[i];
#if !GREEDY
    // mx.random.categorical: argmax(gumbel + logits), the gumbel noise -log(-log(u)) of
    // mx.random.uniform's u from the bits of this element of the (rows, V) draw.
    const uint32_t count = (uint32_t)((PER_ROW ? K : B * K) * V);
    const uint32_t word = random_word(step, (uint32_t)((PER_ROW ? k : row) * V + v), count);
    const float u = fminf((float)word / 4294967296.0f, 0.99999994f);
    s = -logf(-logf(u)) + s;
#endif
    if (s > best) {
      best = s;
      best_index = v;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, o);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, o);
    if (other > best || (other == best && other_index < best_index)) {
      best = other;
      best_index = other_index;
    }
  }
  __shared__ float top[WARPS];
  __shared__ int top_index[WARPS];
  if (lane == 0) {
    top[warp] = best;
    top_index[warp] = best_index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < WARPS; ++w) {
      if (top[w] > best || (top[w] == best && top_index[w] < best_index)) {
        best = top[w];
        best_index = top_index[w];
      }
    }
    const int given = fixed[row];
    codes[row] = given >= 0 ? given : (best_index == 0x7fffffff ? 0 : best_index);
  }
"""

RANDOM = """
// MLX's random bits: threefry2x32 (20 rounds), and the layout of mx.random's (n,) uint32 draw.
__device__ inline uint2 threefry(uint2 key, uint2 count) {
  const uint32_t rotations[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {key.x, key.y, key.x ^ key.y ^ 0x1BD11BDAu};
  uint32_t x = count.x + ks[0], y = count.y + ks[1];
#pragma unroll
  for (int i = 0; i < 5; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t r = rotations[i % 2][j];
      x += y;
      y = (y << r) | (y >> (32 - r));
      y ^= x;
    }
    x += ks[(i + 1) % 3];
    y += ks[(i + 2) % 3] + i + 1;
  }
  return make_uint2(x, y);
}
__device__ inline uint32_t random_word(uint2 key, uint32_t j, uint32_t n) {
  const uint32_t half = n / 2, upper = n - half;
  if (j < upper) {
    const bool last = (n & 1u) && j == half;
    return threefry(key, make_uint2(j, last ? 0u : j + upper)).x;
  }
  return threefry(key, make_uint2(j - upper, j)).y;
}
// Floats as unsigned integers in the same order.
__device__ inline uint32_t ordered(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
"""


def heads_fit(x: mx.array, norm: nn.Module, heads: list) -> bool:
    """Whether ``heads`` covers these heads applied to ``norm(x)``, x (B, 1, D)."""
    if x.ndim != 3 or x.shape[1] != 1 or not rows_fit(x) or not isinstance(norm, nn.LayerNorm):
        return False
    if "weight" not in norm or "bias" not in norm or norm.weight.dtype != x.dtype:
        return False
    shape = heads[0].weight.shape
    return (
        all(
            type(head) is nn.Linear
            and "bias" not in head
            and head.weight.dtype == mx.float32
            and head.weight.shape == shape
            for head in heads
        )
        and shape[1] == x.shape[-1]
        and shape[1] % (32 * 4) == 0
    )


def heads(x: mx.array, norm: nn.LayerNorm, heads: list) -> mx.array:
    """float32 logits (B, K, 1, V) of every head on ``norm(x)``, x (B, 1, D): one kernel."""
    rows, width = x.shape[0], x.shape[-1]
    count, vocab = len(heads), heads[0].weight.shape[0]
    pick = " : ".join(f"(n) / VOCAB == {i} ? w{i}" for i in range(count - 1))
    pointer = (
        f"(({pick} : w{count - 1}) + (size_t)((n) % VOCAB) * K)"
        if count > 1
        else ("(w0 + (size_t)(n) * K)")
    )
    names = ("x", *(f"w{i}" for i in range(count)), "norm_w", "norm_b")
    inputs = [x, *(head.weight for head in heads), norm.weight, norm.bias]
    kernel = build(
        "heads",
        LINEAR,
        tuple((name, a.dtype) for name, a in zip(names, inputs, strict=True)),
        (("y", mx.float32),),
        header=HELPERS,
        T=x.dtype,
        W=mx.float32,
        O=mx.float32,
        K=width,
        R=rows,
        NCOLS=count * vocab,
        THREADS=THREADS,
        ACT=0,
        HAS_NORM=1,
        HAS_RESIDUAL=0,
        EPS=float(norm.eps),
        VOCAB=vocab,
        **{"WEIGHT_ROW(n)": pointer},
    )
    warps = THREADS // 32
    (y,) = kernel(
        inputs,
        output_shapes=[(rows, count, 1, vocab)],
        output_dtypes=[mx.float32],
        grid=(-(-count * vocab // warps) * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
    )
    return y


def sampler_fits(settings: dict | None, vocab: int) -> bool:
    """Whether ``sample`` draws what a sampler with these ``settings`` (``make_sampler``'s
    temperature, top_k, top_p, min_p) draws, over ``vocab`` codes: not with top-p or min-p."""
    if not settings or not {"temperature", "top_k", "top_p"} <= set(settings) <= {
        "temperature", "top_k", "top_p", "min_p"
    }:
        return False
    return (
        not 0 < settings["top_p"] < 1
        and not settings.get("min_p")
        and vocab <= THREADS * MAX_VOCAB_PER_THREAD
    )


def sample(
    logits: mx.array,
    key: mx.array,
    fixed: mx.array,
    *,
    guidance_scale: float | None,
    temperature: float,
    top_k: int,
) -> tuple[mx.array, mx.array]:
    """Codes (B, K) int32 and the next key, from float32 ``logits`` (2B or B, K, V).

    ``guidance_scale`` (None: no guidance) combines the conditional rows (the first B) with the
    unconditional ones as ``uncond + (cond - uncond) * guidance_scale``; then the codes are
    drawn as ``make_sampler(temperature, top_k)`` draws them with this step's key, split off
    ``key`` (2,) as ``mx.random.split`` does, or from each row's key where ``key`` is (B, 2).
    Where ``fixed`` (B, K) is >= 0 it is the code instead.
    """
    batch, codebooks = fixed.shape
    vocab = logits.shape[-1]
    greedy = temperature == 0 or top_k == 1
    fixed = fixed.astype(mx.int32)
    kernel = build(
        "sample",
        SAMPLE,
        (("logits", logits.dtype), ("key_in", key.dtype), ("fixed", mx.int32)),
        (("codes", mx.int32), ("next_key", mx.uint32)),
        (("int", "NB"), ("int", "NK")),
        header=RANDOM,
        GUIDED=int(guidance_scale is not None),
        SCALE=float(guidance_scale or 0.0),
        TEMP=float(temperature) if not greedy else 1.0,
        TOP_K=int(top_k) if 0 < top_k < vocab else 0,
        GREEDY=int(greedy),
        PER_ROW=int(key.ndim == 2),
        THREADS=THREADS,
        V=vocab,
        VPT=-(-vocab // THREADS),
    )
    codes, next_key = kernel(
        [logits, key, fixed],
        output_shapes=[(batch, codebooks), key.shape],
        output_dtypes=[mx.int32, mx.uint32],
        grid=(batch * codebooks * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
        scalars=(batch, codebooks),
    )
    return codes, next_key
