"""The decoder's whole single-position decoding step in one persistent kernel.

At batch 1 a step reads about 0.7 GB of float16 weights (musicgen-small): 0.15 ms at the GPU's
bandwidth, against about 1.7 ms for ~200 separate kernels, each paying its launch, its ramp-up
and its tail. Here one kernel runs every layer: one block per multiprocessor, all of them
resident at once, each phase (a projection, an attention, a feed-forward half) spread over every
warp of the grid, and a grid-wide barrier between phases (``musicgen.kernels.persistent``). A
phase's input rows (a few: batch x CFG branches) are staged, layer-normalized, in each block's
shared memory; each warp then streams whole weight rows from memory, several in flight. Everything a
phase writes for the next (the residual stream, the projections) is read back from L2
(``ld.global.cg``), never from a multiprocessor's possibly stale L1.

The kernel starts from the codes (it sums the codebooks' embeddings and the sinusoidal
position), writes the step's keys and values into the StaticCache in place (as
``cached_attention`` does) and returns the last layer's output; the heads and the sampling stay
the two kernels of ``musicgen.kernels.sampling``. For a short text (``fold_fits``) the
cross-attention's query and output projections are folded into the text's keys and values once
per generation (``fold_cross_attention``): two phases instead of three.

It needs the layers' weights of one kind stacked in one array (``musicgen.kernels.stacked``):
the layers then hold views of those arrays, so nothing is stored twice.
"""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn

from musicgen.kernels.attention import ATTEND, POSITION_SLOTS
from musicgen.kernels.compiler import DTYPES, build
from musicgen.kernels.linear import ACTIVATIONS, HELPERS
from musicgen.kernels.persistent import GRID_SYNC, multiprocessors
from musicgen.kernels.stacked import LINEARS, NORMS, StackedLayers, layer_module

THREADS = 512  # 16 warps per block, one block per multiprocessor
MAX_ROWS = 8
STAGED_BYTES = 40 * 1024  # dynamic shared memory for a phase's staged input rows
ENV = "MUSICGEN_STEP_KERNEL"  # "0": run the step as separate kernels
DEVICE = (
    HELPERS
    + ATTEND
    + GRID_SYNC
    + """
// Stages R rows of `src` (R x W, written by this launch) in shared memory, layer-normalized
// with (nw, nb) when NORM (in float32, rounded to T as MLX's LayerNorm in T is).
template <int W, bool NORM>
__device__ inline void stage(T* xs, const T* src, const T* nw, const T* nb) {
  constexpr int VEC = 16 / sizeof(T);
  __shared__ float stats[R][2];
  for (int i = threadIdx.x; i < R * W / VEC; i += THREADS) {
    *reinterpret_cast<Pack<T>*>(xs + i * VEC) = load_pack_cg(src + i * VEC);
  }
  __syncthreads();
  if (NORM) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int r = warp; r < R; r += THREADS / 32) {
      float sum = 0.0f;
      for (int k = lane; k < W; k += 32) sum += to_float(xs[r * W + k]);
      const float mean = warp_sum(sum) / W;
      float sq = 0.0f;
      for (int k = lane; k < W; k += 32) {
        const float d = to_float(xs[r * W + k]) - mean;
        sq += d * d;
      }
      const float var = warp_sum(sq) / W;
      if (lane == 0) {
        stats[r][0] = mean;
        stats[r][1] = rsqrtf(var + EPS);
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < R * W; i += THREADS) {
      const int r = i / W, k = i - r * W;
      const float v = (to_float(xs[i]) - stats[r][0]) * stats[r][1];
      xs[i] = from_float<T>(v * to_float(nw[k]) + to_float(nb[k]));
    }
    __syncthreads();
  }
}

// A warp's columns: NCOL at a time from column first_warp() * NCOL, warps numbered
// multiprocessor-first so that a phase with few columns still spreads over the whole chip.
__device__ inline int first_warp() { return (threadIdx.x >> 5) * gridDim.x + blockIdx.x; }

// A projection's weights into L2 before the grid barrier that precedes it (they do not depend
// on the data): the barrier's wait hides the reads from memory. Each warp asks for the rows it
// will read (one bulk prefetch per group of NCOL contiguous rows).
template <int KW, int N, int NCOL>
__device__ inline void prefetch(const T* w) {
  const int warps = gridDim.x * (THREADS / 32);
  for (int n0 = first_warp() * NCOL; n0 < N; n0 += warps * NCOL) {
#if __CUDA_ARCH__ >= 900  // Hopper's bulk prefetch: one instruction for the rows
    if ((threadIdx.x & 31) == 0) {
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                   :: "l"(w + (size_t)n0 * KW), "r"((unsigned int)(NCOL * KW * sizeof(T)))
                   : "memory");
    }
#else  // one 128-byte line per lane and instruction
    const char* rows = reinterpret_cast<const char*>(w + (size_t)n0 * KW);
    for (int at = (threadIdx.x & 31) * 128; at < NCOL * KW * (int)sizeof(T); at += 32 * 128) {
      asm volatile("prefetch.global.L2 [%0];" :: "l"(rows + at));
    }
#endif
  }
}

// `count` rows of `width` T each from `base` into L2 (a runtime count: the text's length).
__device__ inline void prefetch_rows(const T* base, int count, int width) {
  const int warps = gridDim.x * (THREADS / 32);
  for (int row = first_warp(); row < count; row += warps) {
#if __CUDA_ARCH__ >= 900
    if ((threadIdx.x & 31) == 0) {
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                   :: "l"(base + (size_t)row * width), "r"((unsigned int)(width * sizeof(T)))
                   : "memory");
    }
#endif
  }
}

// y[r, n] = act(xs[r] . w[n]) for the N rows n of w (N x KW), or y[r, n] += xs[r] . w[n] with
// RESIDUAL. Each warp takes NCOL columns at a time, STEP 16-byte loads of each in flight.
template <int KW, int N, int NCOL, int STEP, int ACTK, bool RESIDUAL>
__device__ inline void gemv(const T* xs, const T* w, T* y) {
  constexpr int VEC = 16 / sizeof(T);
  constexpr int CHUNKS = KW / (32 * VEC);
  static_assert(CHUNKS % STEP == 0 && N % NCOL == 0, "whole passes, whole column groups");
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * (THREADS / 32);
  for (int n0 = first_warp() * NCOL; n0 < N; n0 += warps * NCOL) {
    float acc[NCOL][R];
#pragma unroll
    for (int j = 0; j < NCOL; ++j)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[j][r] = 0.0f;
#pragma unroll 1
    for (int c0 = 0; c0 < CHUNKS; c0 += STEP) {
      Pack<T> wv[NCOL][STEP];
#pragma unroll
      for (int j = 0; j < NCOL; ++j)
#pragma unroll
        for (int c = 0; c < STEP; ++c)
          wv[j][c] = load_pack(w + (size_t)(n0 + j) * KW + ((c0 + c) * 32 + lane) * VEC);
#pragma unroll
      for (int c = 0; c < STEP; ++c) {
        const int k0 = ((c0 + c) * 32 + lane) * VEC;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const Pack<T> xv = *reinterpret_cast<const Pack<T>*>(xs + r * KW + k0);
#pragma unroll
          for (int j = 0; j < NCOL; ++j)
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[j][r] += to_float(wv[j][c].v[e]) * to_float(xv.v[e]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < NCOL; ++j) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        T* out = y + (size_t)r * N + n0 + j;
        float v = activate(warp_sum(acc[j][r]), ACTK);
        if (RESIDUAL) v += load_cg(out);
        if (lane == 0) *out = from_float<T>(v);
      }
    }
  }
}

"""
)

STEP = """
  constexpr int QKV = 3 * D;
  extern __shared__ __align__(16) unsigned char staged[];
  T* xs = reinterpret_cast<T*>(staged);
  unsigned int* bar = const_cast<unsigned int*>(barrier);
  const int S = CACHE_LENGTH, ST = TEXT_LENGTH;
  const int pos = position[0];
  if (blockIdx.x == 0 && threadIdx.x == 0) next_position[0] = pos + 1;

  // The input: the codebooks' embeddings summed in T (as MLX sums them) + the position.
  for (int i = blockIdx.x * THREADS + threadIdx.x; i < R * D; i += gridDim.x * THREADS) {
    const int r = i / D, n = i - r * D;
    float sum = to_float(embed[(size_t)codes[r * NCODEBOOKS] * D + n]);
    for (int k = 1; k < NCODEBOOKS; ++k) {
      const float e = to_float(embed[((size_t)k * VOCAB1 + codes[r * NCODEBOOKS + k]) * D + n]);
      sum = to_float(from_float<T>(sum + e));
    }
    const float angle = (float)pos * freqs[n < D / 2 ? n : n - D / 2];
    const float pe = n < D / 2 ? cosf(angle) : sinf(angle);
    x[i] = from_float<T>(sum + to_float(from_float<T>(pe)));
  }

  // Each projection: its weights on their way to L2, the barrier (the phase before has written
  // its input), the input staged, then the weights streamed.
  for (int layer = 0; layer < LAYERS; ++layer) {
    const T* norm = norms + (size_t)layer * 6 * D;
    // Self-attention: LN -> QKV; the new key and value into the cache, attention over the
    // cache; out projection + residual.
    {
      const T* w = qkv_w + (size_t)layer * QKV * D;
      prefetch<D, QKV, NC_QKV>(w);
      grid_sync(bar);
      stage<D, true>(xs, x, norm, norm + D);
      gemv<D, QKV, NC_QKV, STEP_QKV, 0, false>(xs, w, qkv);
    }
    grid_sync(bar);
    for (int item = blockIdx.x; item < R * NUM_HEADS; item += gridDim.x) {
      const int r = item / NUM_HEADS, h = item - r * NUM_HEADS;
      const size_t head = (((size_t)layer * R + r) * NUM_HEADS + h) * S * HD;
      T* k_cache = const_cast<T*>(keys) + head;
      T* v_cache = const_cast<T*>(values) + head;
      const T* fresh = qkv + (size_t)r * QKV + h * HD;
      if (threadIdx.x < HD) {
        const size_t at = (size_t)pos * HD + threadIdx.x;
        k_cache[at] = from_float<T>(load_cg(fresh + D + threadIdx.x));
        v_cache[at] = from_float<T>(load_cg(fresh + 2 * D + threadIdx.x));
      }
      __syncthreads();
      attend(fresh, Contiguous{k_cache}, Contiguous{v_cache}, pos + 1, nullptr,
             att + (size_t)r * D + h * HD);
    }
    {
      const T* w = out_w + (size_t)layer * D * D;
      prefetch<D, D, NC_D>(w);
      grid_sync(bar);
      stage<D, false>(xs, att, nullptr, nullptr);
      gemv<D, D, NC_D, STEP_D, 0, true>(xs, w, x);
    }
#if FOLDED
    // Cross-attention folded into the text (``fold_cross_attention``, once per generation):
    // per row, head h and text position t, kq = K_t Wq_h and vo = V_t Wo_h^T (D wide), so
    // scores = SCALE LN(x) . kq (+ bias), then x += sum over (h, t) of softmax_h(scores) vo.
    // Two phases instead of three (query, attention, output), and fewer bytes for short text.
    {
      constexpr int VEC = 16 / sizeof(T);
      const int lane = threadIdx.x & 31, warps = gridDim.x * (THREADS / 32);
      const int items = R * NUM_HEADS * ST;  // (row, head, text position)
      const T* kq = cross_kq + (size_t)layer * items * D;
      prefetch_rows(kq, items, D);
      grid_sync(bar);
      stage<D, true>(xs, x, norm + 2 * D, norm + 3 * D);
      for (int item = first_warp(); item < items; item += warps) {
        const int r = item / (NUM_HEADS * ST);
        float acc = 0.0f;
#pragma unroll
        for (int c = 0; c < D / (32 * VEC); ++c) {
          const int k0 = (c * 32 + lane) * VEC;
          const Pack<T> kv = load_pack(kq + (size_t)item * D + k0);
          const Pack<T> xv = *reinterpret_cast<const Pack<T>*>(xs + r * D + k0);
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc += to_float(kv.v[e]) * to_float(xv.v[e]);
        }
        acc = warp_sum(acc) * SCALE;
#if HAS_BIAS
        acc += to_float(bias[(size_t)r * ST + item % ST]);
#endif
        if (lane == 0) scores[item] = acc;
      }
    }
    {
      const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
      constexpr int WARPS = THREADS / 32;
      const int terms = NUM_HEADS * ST;  // (head, text position) of a row
      const T* vo = cross_vo + (size_t)layer * R * terms * D;
      prefetch_rows(vo, R * terms, D);
      grid_sync(bar);
      // Every block with columns to add: the softmax of each (row, head) over the text, into
      // shared memory.
      float* ps = reinterpret_cast<float*>(staged);
      float* partial = ps + R * terms;  // WARPS x R x 32 column sums
      for (int g = blockIdx.x * 32 < D ? warp : R * NUM_HEADS; g < R * NUM_HEADS; g += WARPS) {
        float* p = ps + g * ST;
        float top = -INFINITY;
        for (int t = lane; t < ST; t += 32) {
          p[t] = load_cg(scores + g * ST + t);
          top = fmaxf(top, p[t]);
        }
        top = warp_max(top);
        float sum = 0.0f;
        for (int t = lane; t < ST; t += 32) {
          p[t] = expf(p[t] - top);
          sum += p[t];
        }
        const float inverse = 1.0f / warp_sum(sum);
        for (int t = lane; t < ST; t += 32) p[t] *= inverse;
      }
      __syncthreads();
      // Then 32 columns at a time: the warps split the (head, text position) terms, warp r adds
      // row r's partial sums and the residual.
      for (int n0 = blockIdx.x * 32; n0 < D; n0 += gridDim.x * 32) {
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = 0.0f;
        for (int term = warp; term < terms; term += WARPS) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const T v = vo[((size_t)r * terms + term) * D + n0 + lane];
            acc[r] += ps[r * terms + term] * to_float(v);
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) partial[(warp * R + r) * 32 + lane] = acc[r];
        __syncthreads();
        if (warp < R) {
          float sum = 0.0f;
          for (int w = 0; w < WARPS; ++w) sum += partial[(w * R + warp) * 32 + lane];
          T* out = x + (size_t)warp * D + n0 + lane;
          *out = from_float<T>(sum + load_cg(out));
        }
        __syncthreads();
      }
    }
#else
    // Cross-attention to the text: LN -> query (into qkv's first R x D); attention; out + residual.
    {
      const T* w = cross_q_w + (size_t)layer * D * D;
      prefetch<D, D, NC_D>(w);
      grid_sync(bar);
      stage<D, true>(xs, x, norm + 2 * D, norm + 3 * D);
      gemv<D, D, NC_D, STEP_D, 0, false>(xs, w, qkv);
    }
    grid_sync(bar);
    for (int item = blockIdx.x; item < R * NUM_HEADS; item += gridDim.x) {
      const int r = item / NUM_HEADS, h = item - r * NUM_HEADS;
      const size_t head = (((size_t)layer * R + r) * NUM_HEADS + h) * ST * HD;
#if HAS_BIAS
      const T* row_bias = bias + (size_t)r * ST;
#else
      const T* row_bias = nullptr;
#endif
      attend(qkv + (size_t)r * D + h * HD, Contiguous{cross_k + head}, Contiguous{cross_v + head},
             ST, row_bias, att + (size_t)r * D + h * HD);
    }
    {
      const T* w = cross_out_w + (size_t)layer * D * D;
      prefetch<D, D, NC_D>(w);
      grid_sync(bar);
      stage<D, false>(xs, att, nullptr, nullptr);
      gemv<D, D, NC_D, STEP_D, 0, true>(xs, w, x);
    }
#endif
    // Feed-forward: LN -> fc1 + activation; fc2 + residual.
    {
      const T* w = fc1_w + (size_t)layer * FFN * D;
      prefetch<D, FFN, NC_FC1>(w);
      grid_sync(bar);
      stage<D, true>(xs, x, norm + 4 * D, norm + 5 * D);
      gemv<D, FFN, NC_FC1, STEP_FC1, ACT, false>(xs, w, hidden);
    }
    {
      const T* w = fc2_w + (size_t)layer * D * FFN;
      prefetch<FFN, D, NC_FC2>(w);
      grid_sync(bar);
      stage<FFN, false>(xs, hidden, nullptr, nullptr);
      gemv<FFN, D, NC_FC2, STEP_FC2, 0, true>(xs, w, x);
    }
  }
"""


def step_available() -> bool:
    """Whether the one-kernel step may run (given that ``musicgen.kernels.available()``): the
    multiprocessors can be counted and ``MUSICGEN_STEP_KERNEL`` is not ``0``."""
    return os.environ.get(ENV, "1") != "0" and multiprocessors() is not None


def _columns_per_warp(width: int, columns: int, rows: int, dtype: mx.Dtype, warps: int) -> dict:
    """How a warp reads weight rows: NC columns at a time, STEP 16-byte loads of each in
    flight (NC x STEP <= 16, NC x rows accumulators <= 16 per lane), for the fewest passes over
    the grid's warps."""
    chunks = width // (32 * (16 // dtype.size))
    best, best_rounds = (1, 1), None
    for ncol in (1, 2, 4):
        if columns % ncol or ncol * rows > 16:
            continue
        step = max(d for d in range(1, 16 // ncol + 1) if chunks % d == 0)
        rounds = -(-columns // (ncol * warps)) * (chunks // step)
        if best_rounds is None or rounds < best_rounds:
            best, best_rounds = (ncol, step), rounds
    return {"NC": best[0], "STEP": best[1]}


def step_fits(decoder: nn.Module) -> bool:
    """Whether the one-kernel step covers this decoder's layers (whatever the batch): MusicGen's
    layers (self- and cross-attention, a two-layer feed-forward) with float weights of the
    compute dtype, no biases, and widths the kernel's vector loads divide."""
    layers = getattr(decoder, "layers", None)
    if not layers:
        return False
    dtype = decoder.layer_norm.weight.dtype
    vector = 16 // dtype.size if dtype in DTYPES else 0
    config = decoder.config
    width, ffn = config.hidden_size, config.ffn_dim
    if not vector or width % (32 * vector) or ffn % (32 * vector) or width % 2:
        return False
    if config.head_dim % 32 or config.head_dim > 128:
        return False
    try:
        if any(layer.act not in ACTIVATIONS for layer in layers):
            return False
        for layer in layers:
            for _, path in LINEARS:
                linear = layer_module(layer, path)
                if type(linear) is not nn.Linear or "bias" in linear:
                    return False
                if linear.weight.dtype != dtype:
                    return False
            for name in NORMS:
                norm = getattr(layer, name)
                if "weight" not in norm or "bias" not in norm or norm.weight.dtype != dtype:
                    return False
                if norm.eps != layers[0].final_layer_norm.eps:  # the kernel has one EPS
                    return False
    except AttributeError:  # another kind of layer (MusicGen-Melody's has no cross-attention)
        return False
    return all(type(e) is nn.Embedding and e.weight.dtype == dtype for e in decoder.embed_tokens)


def step_rows_fit(rows: int, decoder: nn.Module) -> bool:
    """Whether ``rows`` (batch x CFG branches) rows fit the kernel's staged inputs."""
    config = decoder.config
    size = decoder.layer_norm.weight.dtype.size
    widest = max(config.hidden_size, config.ffn_dim)
    return 1 <= rows <= MAX_ROWS and rows * widest * size <= STAGED_BYTES


def fold_fits(rows: int, text_length: int, decoder: nn.Module) -> bool:
    """Whether ``fold_cross_attention`` pays and fits for ``rows`` rows and this text: the
    folded keys and values are no larger than the query and output projections they replace,
    and the rows' softmax (and the columns' partial sums) fit in shared memory."""
    terms = decoder.config.num_attention_heads * text_length
    return rows * terms <= decoder.config.hidden_size and _fold_bytes(rows, terms) <= STAGED_BYTES


def _fold_bytes(rows: int, terms: int) -> int:
    """Shared memory of the folded cross-attention's second phase: the rows' softmax and the
    warps' partial column sums (float32)."""
    return rows * (terms + THREADS) * 4


def fold_cross_attention(stacked: StackedLayers, config, cross_kv: tuple) -> tuple:
    """(keys, values) -> (keys, values, kq, vo) for ``decoder_step``, once per generation.

    Per layer, row, head h and text position t: kq = K_t . Wq_h (the query projection's rows of
    head h, so that q_h . K_t = LN(x) . kq) and vo = V_t . Wo_h^T (the output projection's
    columns of head h, so that the head's share of the output is sum_t p_t vo_t); each
    (layers, rows, heads, text length, width), in the compute dtype.
    """
    keys, values = cross_kv[:2]
    layers, width = stacked.arrays["cross_q"].shape[:2]
    heads, head_dim = config.num_attention_heads, config.head_dim
    query = stacked.arrays["cross_q"].reshape(layers, 1, heads, head_dim, width)
    out = stacked.arrays["cross_out"].reshape(layers, width, heads, head_dim)
    out = out.transpose(0, 2, 3, 1)[:, None]  # (layers, 1, heads, head_dim, width)
    return keys, values, keys @ query, values @ out


def decoder_step(
    codes: mx.array,
    stacked: StackedLayers,
    config,
    frequencies: mx.array,
    cache: tuple[mx.array, mx.array, mx.array],
    position: mx.array,
    cross_kv: tuple[mx.array, mx.array],
    cross_bias: mx.array | None,
    eps: float,
    activation,
) -> tuple[mx.array, mx.array]:
    """One decoding position of every layer -> (last layer's output (R, 1, D), next position).

    ``codes`` (R, K, 1) int32; ``cache`` is the StaticCache's (keys, values, barrier), keys and
    values (layers, R, H, S, head_dim), written at ``position[0]`` (int32) in place;
    ``cross_kv`` the text's keys and values (layers, R, H, text length, head_dim), followed by
    their folded forms where ``fold_cross_attention`` made them, and ``cross_bias`` (R, 1, 1,
    text length) or None.
    """
    rows, codebooks = codes.shape[0], codes.shape[1]
    keys, values, barrier = cache
    stacked = stacked.arrays
    dtype = stacked["qkv"].dtype
    width, ffn, heads, head_dim = (config.hidden_size, config.ffn_dim,
                                   config.num_attention_heads, config.head_dim)  # fmt: skip
    blocks = multiprocessors()
    warps = blocks * (THREADS // 32)
    phases = {"QKV": (width, 3 * width), "D": (width, width), "FC1": (width, ffn),
              "FC2": (ffn, width)}  # fmt: skip
    layout = {
        f"{key}_{phase}": value
        for phase, (w, n) in phases.items()
        for key, value in _columns_per_warp(w, n, rows, dtype, warps).items()
    }
    inputs = [
        ("codes", codes.astype(mx.int32)),
        ("embed", stacked["embed"]),
        ("freqs", frequencies),
        ("position", position),
        *((f"{name}_w", stacked[name]) for name, _ in LINEARS),
        ("norms", stacked["norms"]),
        ("keys", keys),
        ("values", values),
        ("cross_k", cross_kv[0]),
        ("cross_v", cross_kv[1]),
        ("barrier", barrier),
    ]
    folded = len(cross_kv) == 4
    if folded:
        inputs += [("cross_kq", cross_kv[2]), ("cross_vo", cross_kv[3])]
    if cross_bias is not None:
        inputs.append(("bias", cross_bias))
    outputs = (
        ("x", (rows, width), dtype),
        ("next_position", (POSITION_SLOTS,), mx.int32),
        ("qkv", (rows, 3 * width), dtype),
        ("att", (rows, width), dtype),
        ("hidden", (rows, ffn), dtype),
        ("scores", (rows * heads * cross_kv[0].shape[3] if folded else 1,), mx.float32),
    )
    kernel = build(
        "step",
        STEP,
        tuple((name, a.dtype) for name, a in inputs),
        tuple((name, out_dtype) for name, _, out_dtype in outputs),
        (("int", "CACHE_LENGTH"), ("int", "TEXT_LENGTH")),
        header=DEVICE,
        launch_bounds=(THREADS, 1),
        T=dtype,
        D=width,
        FFN=ffn,
        NUM_HEADS=heads,
        HD=head_dim,
        R=rows,
        NCODEBOOKS=codebooks,
        VOCAB1=stacked["embed"].shape[1],
        LAYERS=stacked["qkv"].shape[0],
        ACT=ACTIVATIONS[activation],
        EPS=float(eps),
        SCALE=float(head_dim**-0.5),
        HAS_BIAS=int(cross_bias is not None),
        FOLDED=int(folded),
        THREADS=THREADS,
        **layout,
    )
    x, next_position, *_ = kernel(
        [a for _, a in inputs],
        output_shapes=[shape for _, shape, _ in outputs],
        output_dtypes=[out_dtype for _, _, out_dtype in outputs],
        grid=(blocks * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
        scalars=(keys.shape[3], cross_kv[0].shape[3]),
        shared_memory=max(rows * max(width, ffn) * dtype.size,
                          _fold_bytes(rows, heads * cross_kv[0].shape[3]) if folded else 0),
    )
    return x.reshape(rows, 1, width), next_position
