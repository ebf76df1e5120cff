"""What the persistent kernels share: a grid-wide barrier, and one such kernel at a time.

A persistent kernel (``musicgen.kernels.step``'s decoding step, ``musicgen.kernels.lstm``'s
recurrence) has every block resident at once and synchronizes them with a barrier in global
memory between its phases; it must not share the GPU with another such kernel, whose blocks
could keep some of its own from being scheduled.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import mlx.core as mx

# The grid barrier's state: (BARRIER_WORDS,) uint32 in device memory (not MLX's managed pool of
# small arrays, which a kernel's atomics reach across the bus); the barrier counts in the first.
BARRIER_WORDS = 64

# A grid-wide barrier for kernels whose blocks are all resident at once.
GRID_SYNC = """
__device__ inline unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Every block of the grid waits here until all have arrived (all must be resident at once).
// One counter, bar[0], persisting between launches: block 0 adds 2^31 - (blocks
// - 1) and every other block 1, so the top bit flips exactly when the last block arrives and
// the low bits come back to where they were. A block waits for the top bit to differ from what
// its own arrival saw: the last arrival is the only write on the way out (no reset, no second
// counter).
__device__ inline void grid_sync(unsigned int* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned int add = blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u;
    __threadfence();
    const unsigned int seen = atomicAdd(bar, add);
    volatile unsigned int* word = bar;
    const unsigned long long start = now_ns();
    for (unsigned int spins = 1; ((*word ^ seen) & 0x80000000u) == 0; ++spins) {
      // A block that never comes (not resident): fail after 10 s rather than hang.
      if ((spins & 4095u) == 0 && now_ns() - start > 10000000000ull) __trap();
    }
    __threadfence();
  }
  __syncthreads();
}
"""


class Issued:
    """What a holder of ``exclusive_steps`` last queued (``last``): the next holder waits for it
    to have run."""

    last: mx.array | None = None


_STEP_LOCK = threading.RLock()
_previous = Issued()


@contextmanager
def exclusive_steps() -> Iterator[Issued]:
    """Hold while queueing persistent kernels (a generation's one-kernel steps, EnCodec's
    LSTM): one holder at a time.

    MLX gives each thread its own stream. Two threads could then run such kernels at once, each
    holding part of the multiprocessors while its grid barrier waits for blocks the other keeps
    out: a deadlock. Here a second thread waits for the first holder's end, then for its last
    queued kernel (``Issued.last``, which the holder keeps current) to have run on the GPU,
    before it queues its own.
    """
    global _previous
    with _STEP_LOCK:
        if _previous.last is not None:
            mx.eval(_previous.last)
        issued = Issued()
        try:
            yield issued
        finally:
            if issued.last is not None:  # queued on this thread's stream, for others to await
                mx.async_eval(issued.last)
            _previous = issued


@cache
def multiprocessors() -> int | None:
    """The number of multiprocessors of CUDA device 0 (the driver API), or None."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, count = ctypes.c_int(), ctypes.c_int()
    if lib.cuInit(0) or lib.cuDeviceGet(ctypes.byref(device), 0):
        return None
    if lib.cuDeviceGetAttribute(ctypes.byref(count), 16, device):  # MULTIPROCESSOR_COUNT
        return None
    return count.value or None
