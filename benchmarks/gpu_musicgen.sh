#!/usr/bin/env bash
# The MusicGen benchmark on the GPU machine (see docs/performance.md, "MusicGen").
# From the repository root, with MLX and its CUDA backend installed (`pip install mlx[cuda13]`):
#   bash benchmarks/gpu_musicgen.sh [OUT_DIR [1|2|3]]
# Writes bench_*.json and bench_*.log to OUT_DIR (default $OUT, else ./out). Part 1: the CUDA
# kernel tests and time to first audio; part 2: musicgen-small at batch 1 (ours in float16 and
# 4-bit, transformers, fast-musicgen) and large batches; part 3: float32 parity, MLX's default
# graph size and the larger models. Each part takes under 10 minutes.
set -uo pipefail
out="${1:-${OUT:-out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-}:$PWD/packages/rag_core/src:$PWD/packages/musicgen/src:$PWD"
checkpoint="${CHECKPOINT:-/tmp/musicgen-small-checkpoint}"  # written by bench_cold.py if absent
# Compiled kernels: one folder for the whole script (bench_cold.py measures its own, empty).
export MLX_RAG_KERNEL_CACHE="${MLX_RAG_KERNEL_CACHE:-/tmp/musicgen-kernels}"
bench() {  # bench NAME TIMEOUT ARGS...: one run of bench_musicgen.py, table at the end
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 benchmarks/bench_musicgen.py --json "$out/bench_$name.json" "$@" \
    >"$out/bench_$name.log" 2>&1
  echo "== $name (exit $?): $*"
  grep -E '^\||^quantize=|^greedy' "$out/bench_$name.log" | awk '!seen[$0]++'
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# MLX's CUDA backend records at most MLX_MAX_OPS_PER_BUFFER kernels per CUDA graph (default
# 20); the rows below use 200 except "ops_default".
export MLX_MAX_OPS_PER_BUFFER=200
part="${2:-all}"
if [[ $part == all || $part == 1 ]]; then
  # The fused kernels against plain MLX and MLX's sampler (skipped on machines without CUDA,
  # such as CI's), and float16/bfloat16 staying finite at musicgen-small's shapes.
  # MLX_ENABLE_TF32=0: float32 matmuls in full float32, for the exact-token comparisons.
  MLX_ENABLE_TF32=0 timeout 300 python3 -m pytest -q -p no:cacheprovider -rf \
    tests/musicgen/test_kernels.py tests/musicgen/test_kernels_step.py \
    tests/musicgen/test_fast_path.py -k "kernel or fused or half_precision" \
    >"$out/pytest_kernels.log" 2>&1
  echo "== kernel tests (exit $?): $(tail -1 "$out/pytest_kernels.log")"
  # Fresh processes: import, load, first and second generation, the CLI, transformers.
  timeout 240 python3 benchmarks/bench_cold.py --checkpoint "$checkpoint" --runs 2 \
    --json "$out/bench_cold.json" >"$out/bench_cold.log" 2>&1
  echo "== cold (exit $?)"
  grep -E '^\|' "$out/bench_cold.log"
fi
if [[ $part == all || $part == 2 ]]; then
  # musicgen-small from the checkpoint on disk, 10 s, CFG: float16 and 4-bit (loaded
  # quantized), transformers (from_pretrained) and fast-musicgen (random weights, same config).
  bench small_b1 240 --checkpoint "$checkpoint" --duration 10 --batch 1 --dtype float16 \
    --quantize 0 4 --fast-musicgen --repeat 2
  # Large batches, one key per prompt as `music batch` samples.
  bench small_batch 150 --checkpoint "$checkpoint" --duration 10 --batch 16 64 128 256 \
    --dtype float16 --per-row-keys --no-reference --repeat 1
fi
if [[ $part == all || $part == 3 ]]; then
  # float32 (matmuls in full float32, not MLX's default TF32) against transformers float32, and
  # greedy codes compiled (fused) == plain.
  MLX_ENABLE_TF32=0 bench small_fp32 200 --duration 10 --batch 1 --dtype float32 --plain --unfused
  # MLX's default number of kernels per CUDA graph.
  MLX_MAX_OPS_PER_BUFFER=20 bench ops_default 80 --duration 10 --batch 1 16 --dtype float16 \
    --no-reference --repeat 2
  # musicgen-medium and -large shapes (ours only).
  bench sizes 150 --models medium large --duration 10 --batch 1 --dtype float16 --no-reference
fi
