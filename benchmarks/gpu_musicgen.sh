#!/usr/bin/env bash
# The MusicGen benchmark on the GPU machine (see docs/performance.md, "MusicGen").
# From the repository root, with MLX installed there (../shared/gpu/README.md):
#   bash benchmarks/gpu_musicgen.sh [OUT_DIR [1|2]]
# Runs the CUDA kernel tests, then writes bench_*.json and bench_*.log to OUT_DIR (default $OUT,
# else ./out); part 1 and part 2 take 5-6 minutes each.
set -uo pipefail
out="${1:-${OUT:-out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-}:$PWD/packages/rag_core/src:$PWD/packages/musicgen/src:$PWD"
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
part="${2:-all}"  # 1: kernel tests, musicgen-small float16; 2: the rest (each < 10 minutes)
if [[ $part != 2 ]]; then
  # The fused kernels against plain MLX (skipped on machines without CUDA, such as CI's), and
  # float16/bfloat16 staying finite at musicgen-small's shapes.
  # MLX_ENABLE_TF32=0: float32 matmuls in full float32, for the exact-token comparisons.
  MLX_ENABLE_TF32=0 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/musicgen/test_kernels.py \
    tests/musicgen/test_fast_path.py -k "kernel or fused or half_precision" \
    >"$out/pytest_kernels.log" 2>&1
  echo "== kernel tests (exit $?): $(tail -1 "$out/pytest_kernels.log")"
  # musicgen-small, 10 s, CFG: float16 and 4-bit; the compiled path without the fused kernels
  # (--unfused) and the plain path (--plain) in the same run; transformers at batch 1.
  bench small_fp16 240 --duration 10 --batch 1 --dtype float16 --quantize 0 4 --plain \
    --unfused --repeat 2
  bench small_fp16_b16 150 --duration 10 --batch 16 --dtype float16 --quantize 0 4 --unfused \
    --no-reference --repeat 2
fi
if [[ $part != 1 ]]; then
  # float32 (matmuls in full float32, not MLX's default TF32) against transformers float32, and
  # greedy codes compiled (fused) == plain.
  MLX_ENABLE_TF32=0 bench small_fp32 200 --duration 10 --batch 1 --dtype float32 --plain --unfused
  # MLX's default number of kernels per CUDA graph.
  MLX_MAX_OPS_PER_BUFFER=20 bench ops_default 80 --duration 10 --batch 1 16 --dtype float16 \
    --no-reference --repeat 2
  # musicgen-medium and -large shapes (ours only).
  bench sizes 150 --models medium large --duration 10 --batch 1 --dtype float16 --no-reference
fi
