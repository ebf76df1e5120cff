"""Attention kernels: cross-attention, and self-attention over a StaticCache written in place.

One block per (row, query position, head), of 1 to 8 warps (``block_threads``) with an online
softmax each, merged at the end. Self-attention reads the past keys and values from the cache
and the new ones straight from the fused QKV projection, and writes the new ones into the cache
*in place* (through MLX's input pointer: the buffers belong to the StaticCache for the whole
generation and nothing else reads or writes them). MLX does not see the write, so the order of
the calls on one cache comes from the data: each call outputs the next position, and the next
call on that layer's cache takes it.
"""

from __future__ import annotations

import mlx.core as mx

from musicgen.kernels.compiler import DTYPES, THREADS, build

# A position on the device is an int32 array of this many elements (64 bytes) of which the
# first counts: MLX's CUDA allocator keeps arrays of 8 bytes or less in managed memory that the
# host reads quickly and a kernel slowly.
POSITION_SLOTS = 16

# Device code shared with the one-kernel step (musicgen.kernels.step), which leaves PRELOAD off
# (its 512-thread blocks have 128 registers a thread for everything): loads of what an earlier
# kernel or phase of the same kernel wrote (from L2, never a multiprocessor's stale L1), and the
# attention of one query over `count` keys and values. The block's warps share the keys, each
# with an online softmax (lane j scores key base + j, then the warp accumulates the values with
# its lanes across the head dimension, one vector load per lane and key); the warps' partial
# results are merged at the end. key_at(t) / value_at(t) point at key and value t (HD values).
LOADS_CG = """
__device__ inline uint4 load16_cg(const void* p) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
template <typename U> __device__ inline Pack<U> load_pack_cg(const U* p) {
  union { uint4 u; Pack<U> pack; } c;
  c.u = load16_cg(p);
  return c.pack;
}
__device__ inline float load_cg(const float* p) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
  return v;
}
template <typename U> __device__ inline float load_cg(const U* p) {  // f16, bf16
  U h;
  asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(h.bits) : "l"(p));
  return to_float(h);
}
"""

ATTEND = LOADS_CG + """
#ifndef PRELOAD
#define PRELOAD 0
#endif

// Keys or values stored one after the other: row t at base + t * HD.
struct Contiguous {
  const T* base;
  __device__ const T* operator()(int t) const { return base + (size_t)t * HD; }
};

// out[0 .. HD) = softmax(SCALE q . k_t + bias_t) . v over t < count; `bias` may be null.
template <typename KeyAt, typename ValueAt>
__device__ inline void attend(const T* query, KeyAt key_at, ValueAt value_at, int count,
                              const T* bias, T* out) {
  constexpr int WARPS = THREADS / 32;
  constexpr int PER_LANE = HD / 32;
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // The scaled query in shared memory (read by every lane at once), not in each thread's
  // registers: fewer registers, more blocks in flight when the batch is large.
  __shared__ float qs[HD];
  __shared__ float part_m[WARPS], part_l[WARPS], part_acc[WARPS][HD];
  for (int d = threadIdx.x; d < HD; d += THREADS) qs[d] = load_cg(query + d) * SCALE;
  __syncthreads();
  struct alignas(PER_LANE * sizeof(T)) LaneValues { T v[PER_LANE]; };
  float m = -INFINITY, l = 0.0f, acc[PER_LANE];
#pragma unroll
  for (int e = 0; e < PER_LANE; ++e) acc[e] = 0.0f;
  for (int base = warp * 32; base < count; base += THREADS) {
    const int t = base + lane;
    const int n = min(32, count - base);
#if PRELOAD
    // The chunk's 32 values (this lane's slice of each) are loaded with its key, before the
    // scores: one trip to memory a chunk rather than one per few values. For small heads in
    // half precision only (32 registers of values, 32 of the key).
    LaneValues chunk[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const T* value = value_at(base + j) + lane * PER_LANE;
      if (j < n) chunk[j] = *reinterpret_cast<const LaneValues*>(value);
    }
#endif
    float s = -INFINITY;
    if (t < count) {
      const T* key = key_at(t);
      float dot = 0.0f;
#pragma unroll
      for (int c = 0; c < HD / VEC; ++c) {
        const Pack<T> p = load_pack(key + c * VEC);
#pragma unroll
        for (int e = 0; e < VEC; ++e) dot += qs[c * VEC + e] * to_float(p.v[e]);
      }
      if (bias != nullptr) dot += to_float(bias[t]);
      s = dot;
    }
    const float m_new = fmaxf(m, warp_max(s));
    const float correction = __expf(m - m_new);
    const float p = t < count ? __expf(s - m_new) : 0.0f;
    l = l * correction + warp_sum(p);
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) acc[e] *= correction;
#if PRELOAD
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      if (j < n) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int e = 0; e < PER_LANE; ++e) acc[e] += pj * to_float(chunk[j].v[e]);
      }
    }
#else
#pragma unroll 8  // several value loads in flight, not one per iteration
    for (int j = 0; j < n; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const T* value = value_at(base + j) + lane * PER_LANE;
      const LaneValues vv = *reinterpret_cast<const LaneValues*>(value);
#pragma unroll
      for (int e = 0; e < PER_LANE; ++e) acc[e] += pj * to_float(vv.v[e]);
    }
#endif
    m = m_new;
  }
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < PER_LANE; ++e) part_acc[warp][lane * PER_LANE + e] = acc[e];
  __syncthreads();
  for (int d = threadIdx.x; d < HD; d += THREADS) {  // blocks of fewer threads than HD too
    float top = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) top = fmaxf(top, part_m[w]);
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      const float f = part_m[w] == -INFINITY ? 0.0f : __expf(part_m[w] - top);
      num += part_acc[w][d] * f;
      den += part_l[w] * f;
    }
    out[d] = from_float<T>(num / den);
  }
  __syncthreads();  // the shared arrays are reused by the block's next item
}
"""

# One block per (row b, query i, head h).
# SELF: queries, new keys and values come from the fused projection qkv (B, L, 3, H, HD); keys
# before `position` come from the cache, and block (b, i, h) writes key/value `position + i`.
_ATTENTION = """
  const int H = NUM_HEADS, S = CACHE_LENGTH, L = LENGTH;
  const int h = blockIdx.x % H;
  const int i = (blockIdx.x / H) % L;
  const int b = blockIdx.x / (H * L);
  // LAYER: this layer's buffers in a (layers, B, H, S, HD) cache (gridDim.x / (H * L) = B).
  const size_t head = (((size_t)LAYER * (gridDim.x / (H * L)) + b) * H + h) * S * HD;
  const T* past_keys = keys + head;
  const T* past_values = values + head;
#if SELF
  const int pos = position[0];
  const T* query = q + ((size_t)(b * L + i) * 3 * H + h) * HD;
  const size_t new_stride = (size_t)3 * H * HD;  // between positions of the new keys
  const T* new_keys = q + ((size_t)(b * L) * 3 * H + H + h) * HD;
  const T* new_values = new_keys + (size_t)H * HD;
  if (blockIdx.x == 0 && threadIdx.x == 0) next_position[0] = pos + L;
  for (int d = threadIdx.x; d < HD; d += THREADS) {  // the new key and value, in place
    const size_t at = (size_t)(pos + i) * HD + d;
    const size_t from = (size_t)i * new_stride + d;
    const_cast<T*>(past_keys)[at] = new_keys[from];
    const_cast<T*>(past_values)[at] = new_values[from];
  }
  // Keys before `pos` from the cache, the others from the projection (other blocks write them).
  auto key_at = [=](int t) {
    return t < pos ? past_keys + (size_t)t * HD : new_keys + (t - pos) * new_stride;
  };
  auto value_at = [=](int t) {
    return t < pos ? past_values + (size_t)t * HD : new_values + (t - pos) * new_stride;
  };
  const int count = pos + i + 1;
#else
  const T* query = q + ((size_t)(b * L + i) * H + h) * HD;
  const Contiguous key_at{past_keys}, value_at{past_values};
  const int count = S;
#endif
#if HAS_BIAS
  const T* row_bias = bias + (size_t)b * S;
#else
  const T* row_bias = nullptr;
#endif
  attend(query, key_at, value_at, count, row_bias, out + ((size_t)(b * L + i) * H + h) * HD);
"""


# Threads per block by the number of blocks (rows x query positions x heads), measured on an
# H200 with musicgen-small's 16 heads of 64 in float16, 24 layers at positions 250 and 450
# (`probe_musicgen_kernels.py --large-batch`). Self-attention loading a chunk's values with its
# keys (``preloads``): 4 warps from PRELOADED_BLOCKS on (512 rows, batch 256 with guidance: 4.63
# and 7.54 ms against 5.78 and 8.53 with 8 warps; 128 rows: 1.97 and 2.85 against 2.21 and
# 3.06). Otherwise 2 warps from MANY_BLOCKS on (512 rows: 5.96 ms against 6.38 with 8 warps at
# position 250; 128 rows: 2.61 against 2.46, so not there).
PRELOADED_BLOCKS = 2048
MANY_BLOCKS = 4096


def block_threads(blocks: int, keys: int | None = None, preload: bool = False) -> int:
    """Threads per block of an attention kernel of ``blocks`` blocks over ``keys`` keys (None:
    up to a cache's length, known only on the device), ``preload`` as ``preloads`` says."""
    if preload and blocks >= PRELOADED_BLOCKS:
        return 128
    if blocks >= MANY_BLOCKS:
        return 64
    if keys is not None:  # no idle warps where the keys are few (cross-attention's text)
        return min(THREADS, max(32, -(-keys // 32) * 32))
    return THREADS


def preloads(head_dim: int, dtype: mx.Dtype) -> bool:
    """Whether self-attention loads a chunk's values with its keys (``PRELOAD``): heads of up to
    128 bytes (MusicGen's 64 in half precision), where the values and a key fit in 64 registers
    a lane. H200, 512 rows at position 250: 4.67 ms against 6.45 with 2-warp blocks.
    Cross-attention over a short text (one chunk a warp) gains nothing and ran slower with it
    (1.50 against 1.03 ms at 512 rows), so it never preloads."""
    return head_dim * dtype.size <= 128


def attention_fits(head_dim: int, dtype: mx.Dtype) -> bool:
    """Whether ``attention`` covers heads of ``head_dim`` in ``dtype``."""
    return dtype in DTYPES and head_dim % 32 == 0 and head_dim <= 128


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
    qkv: mx.array,
    keys: mx.array,
    values: mx.array,
    position: mx.array,
    *,
    scale: float,
    layer: int = 0,
) -> tuple[mx.array, mx.array]:
    """Self-attention over a cache -> ((B, L, H x D) output, next position).

    ``qkv`` is the fused projection (B, L, 3 x H x D) of L new positions; query i attends
    causally to the cache's first ``position[0]`` (int32) keys and the new keys up to its
    own, and the new keys and values are written into ``keys``/``values`` (B, H, S, D), or
    into ``layer`` of (layers, B, H, S, D) ones, at ``position`` .. ``position + L - 1`` in
    place. The next position (``position + L``, a ``POSITION_SLOTS`` array) is an output of the
    same kernel: the next call
    on this cache must take it, which orders that call's reads after this call's writes.
    """
    return tuple(_attention(qkv, keys, values, scale, position=position, layer=layer))


def _attention(
    queries, keys, values, scale, *, position=None, bias=None, layer: int = 0
) -> list[mx.array]:
    batch, heads, _, head_dim = keys.shape[-4:]
    length = queries.shape[1]
    known_keys = None if position is not None else keys.shape[-2]  # a cache: up to its position
    preload = position is not None and preloads(head_dim, queries.dtype)
    threads = block_threads(batch * length * heads, known_keys, preload)
    inputs = [queries, keys, values]
    shapes, dtypes = [(batch, length, heads * head_dim)], [queries.dtype]
    if position is not None:
        inputs.append(position)
        shapes.append((POSITION_SLOTS,))
        dtypes.append(mx.int32)
    if bias is not None:
        inputs.append(bias)
    self_attention, has_bias = position is not None, bias is not None
    names = ["q", "keys", "values"] + ["position"] * self_attention + ["bias"] * has_bias
    outputs = (("out", queries.dtype),) + ((("next_position", mx.int32),) if self_attention else ())
    kernel = build(
        "attention",
        _ATTENTION,
        tuple((name, a.dtype) for name, a in zip(names, inputs, strict=True)),
        outputs,
        (("int", "NUM_HEADS"), ("int", "CACHE_LENGTH"), ("int", "LENGTH"), ("int", "LAYER")),
        header=ATTEND,
        SELF=int(self_attention),
        HAS_BIAS=int(has_bias),
        SCALE=float(scale),
        T=queries.dtype,
        HD=head_dim,
        THREADS=threads,
        PRELOAD=int(preload),
    )
    return kernel(
        inputs,
        output_shapes=shapes,
        output_dtypes=dtypes,
        grid=(batch * length * heads * threads, 1, 1),
        threadgroup=(threads, 1, 1),
        scalars=(heads, keys.shape[-2], length, layer),
    )
