"""An LSTM layer's whole recurrence in one kernel (EnCodec's decoder on CUDA).

Step by step, an LSTM is two kernels a time step (the recurrent product, then the gates), so
EnCodec's two layers over 10 s of audio (500 frames) cost about a thousand launches and their
set-up: 70-78 ms of a 117 ms decode on an H200 (``benchmarks/probe_musicgen_step.py decode``).
Here one launch runs every time step of a few rows: each warp of the grid owns one hidden unit,
holds that unit's four rows of recurrent weights in registers for the whole run, and computes
its gates and cell update for every row; a grid-wide barrier (``musicgen.kernels.persistent``)
separates the time steps, each block staging the rows' last hidden states from L2 in shared
memory. A version with one block per row and no barrier was slower than MLX's step-by-step
loop (one multiprocessor's latency chain over 512 units a step).

musicgen runs EnCodec in float32, and its layers have 1024 units: 8 loads of 16 bytes per lane
and gate row. Until 2026-12-01 the kernel took at most 4 (512 threads a block, 128 registers a
lane), so it never ran in a decode; now a block has 256 threads where the grid fits (H100 and
H200: 128 blocks of 132 multiprocessors), and no register spills. On an H200 a time step of
one row takes 3.5 us in the kernel, against about 68 us in the step-by-step loop.

The arithmetic follows ``musicgen.encodec.lstm``'s steps: the gates are the input projection
plus the recurrent product (float32 accumulation, rounded to T like ``mx.addmm``), then each
elementwise operation rounded to T as MLX's fused kernel does.
"""

from __future__ import annotations

import mlx.core as mx

from musicgen.kernels.attention import LOADS_CG
from musicgen.kernels.compiler import DTYPES, build
from musicgen.kernels.persistent import BARRIER_WORDS, GRID_SYNC, exclusive_steps, multiprocessors

# Threads a block (a hidden unit a warp): 256 where the grid's blocks then fit on the GPU (a
# lane may use up to 255 registers: EnCodec's float32 layer of 1024 units keeps its 128 bytes
# of weights per gate without spilling), else 512 (128 registers a lane; spills, still fast).
THREADS = (256, 512)
MAX_ROWS = 8  # rows in one launch (accumulators per lane: 4 gates x rows)
MAX_CHUNKS = 8  # 16-byte loads per lane and gate row: the weights a lane keeps in registers

SOURCE = """
  constexpr int VEC = 16 / sizeof(T);
  constexpr int CHUNKS = H / (32 * VEC);
  __shared__ __align__(16) T hs[N * H];  // the rows' hidden states of the last step
  unsigned int* bar = const_cast<unsigned int*>(barrier);
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5);  // this warp's hidden unit
  const bool owner = j < H;
  Pack<T> w[4][CHUNKS];
  float cell = 0.0f;  // lane r < N: row r's cell of unit j
  if (owner) {
#pragma unroll
    for (int g = 0; g < 4; ++g)
#pragma unroll
      for (int c = 0; c < CHUNKS; ++c)
        w[g][c] = load_pack(wh + ((size_t)g * H + j) * H + (c * 32 + lane) * VEC);
    if (lane < N) cell = to_float(c0[(size_t)lane * H + j]);
  }
  for (int t = 0; t < L; ++t) {
    // This step's projected gates (lane g * N + r: gate g of row r), before the wait.
    float pre = 0.0f;
    if (owner && lane < 4 * N) {
      const int g = lane / N, r = lane - g * N;
      pre = to_float(projected[((size_t)r * L + t) * 4 * H + g * H + j]);
    }
    if (t > 0) grid_sync(bar);
    const T* last = t == 0 ? h0 : out + (size_t)(t - 1) * H;  // row r at last + r * row_stride
    const size_t row_stride = t == 0 ? H : (size_t)L * H;
    for (int i = threadIdx.x; i < N * H / VEC; i += THREADS) {
      const int r = i / (H / VEC), k = (i - r * (H / VEC)) * VEC;
      *reinterpret_cast<Pack<T>*>(hs + r * H + k) = load_pack_cg(last + r * row_stride + k);
    }
    __syncthreads();
    if (!owner) continue;
    float acc[4][N];
#pragma unroll
    for (int g = 0; g < 4; ++g)
#pragma unroll
      for (int r = 0; r < N; ++r) acc[g][r] = 0.0f;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int k0 = (c * 32 + lane) * VEC;
#pragma unroll
      for (int r = 0; r < N; ++r) {
        const Pack<T> h = *reinterpret_cast<const Pack<T>*>(hs + r * H + k0);
#pragma unroll
        for (int g = 0; g < 4; ++g)
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[g][r] += to_float(w[g][c].v[e]) * to_float(h.v[e]);
      }
    }
    float gate[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // lane r: row r's gates
#pragma unroll
    for (int g = 0; g < 4; ++g)
#pragma unroll
      for (int r = 0; r < N; ++r) {
        const float sum = warp_sum(acc[g][r]) + __shfl_sync(0xffffffffu, pre, g * N + r);
        if (lane == r) gate[g] = rnd(sum);
      }
    if (lane < N) {
      const float kept = rnd(rnd(sigmoid(gate[1])) * cell);
      const float added = rnd(rnd(sigmoid(gate[0])) * rnd(tanhf(gate[2])));
      cell = rnd(kept + added);
      const T hidden = from_float<T>(rnd(sigmoid(gate[3])) * rnd(tanhf(cell)));
      out[((size_t)lane * L + t) * H + j] = hidden;
      if (t == L - 1) {
        h_last[(size_t)lane * H + j] = hidden;
        c_last[(size_t)lane * H + j] = from_float<T>(cell);
      }
    }
  }
"""

HEADER = (
    LOADS_CG
    + GRID_SYNC
    + """
__device__ inline float rnd(float v) { return to_float(from_float<T>(v)); }
__device__ inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
"""
)


def lstm_fits(x: mx.array, recurrent: mx.array) -> bool:
    """Whether ``lstm_recurrence`` covers this layer: up to ``MAX_ROWS`` rows of a float dtype
    the kernels know, the recurrent weights (4 H, H) in the same dtype, H a whole number of
    16-byte loads per lane (at most ``MAX_CHUNKS``) and a warp per hidden unit resident."""
    hidden = recurrent.shape[-1]
    if x.dtype not in DTYPES or recurrent.dtype != x.dtype or x.ndim != 3:
        return False
    per_load = 32 * (16 // x.dtype.size)
    return (
        recurrent.shape == (4 * hidden, hidden)
        and x.shape[-1] == 4 * hidden
        and 1 <= x.shape[0] <= MAX_ROWS
        and x.shape[1] > 0
        and hidden % per_load == 0
        and hidden // per_load <= MAX_CHUNKS
        and _layout(hidden) is not None
    )


def _layout(hidden: int) -> tuple[int, int] | None:
    """(threads a block, blocks) of the grid, a warp per hidden unit and every block resident
    (one a multiprocessor): the first of ``THREADS`` that fits; None if none does."""
    for threads in THREADS:
        blocks = -(-hidden // (threads // 32))
        if blocks <= (multiprocessors() or 0):
            return threads, blocks
    return None


def lstm_recurrence(
    projected: mx.array, hidden: mx.array, cell: mx.array, recurrent: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    """Every time step of an LSTM layer where ``lstm_fits``.

    ``projected`` (N, L, 4 H): the input's projection plus bias, gates in PyTorch's order
    (i, f, g, o); ``hidden`` and ``cell`` (N, H) the start state; ``recurrent`` (4 H, H) the
    recurrent weights. Returns every step's hidden state (N, L, H) and the last hidden state
    and cell (N, H). Like the one-kernel step, it needs all its blocks resident at once, so it
    runs under ``exclusive_steps``.
    """
    rows, length, _ = projected.shape
    size = recurrent.shape[-1]
    dtype = projected.dtype
    inputs = (*((name, dtype) for name in ("projected", "h0", "c0", "wh")), ("barrier", mx.uint32))
    outputs = (("out", dtype), ("h_last", dtype), ("c_last", dtype))
    threads, blocks = _layout(size)
    defines = {"T": dtype, "H": size, "N": rows, "THREADS": threads}
    kernel = build("lstm", SOURCE, inputs, outputs, (("int", "L"),), header=HEADER,
                   launch_bounds=(threads, 1), **defines)  # fmt: skip
    with exclusive_steps() as issued:
        barrier = mx.zeros((BARRIER_WORDS,), mx.uint32)
        outputs = kernel(
            [projected, hidden.astype(dtype), cell.astype(dtype), recurrent, barrier],
            output_shapes=[(rows, length, size), (rows, size), (rows, size)],
            output_dtypes=[dtype] * 3,
            grid=(blocks * threads, 1, 1),
            threadgroup=(threads, 1, 1),
            scalars=(length,),
        )
        issued.last = outputs[0]
    return tuple(outputs)
