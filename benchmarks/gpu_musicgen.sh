#!/usr/bin/env bash
# The MusicGen benchmark on the GPU machine (see docs/performance.md, "MusicGen").
# From the repository root, with MLX installed there (../shared/gpu/README.md):
#   bash benchmarks/gpu_musicgen.sh [OUT_DIR]
# Writes bench_*.json and bench_*.log to OUT_DIR (default $OUT, else ./out); about 8 minutes.
set -uo pipefail
out="${1:-${OUT:-out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-}:$PWD/packages/rag_core/src:$PWD/packages/musicgen/src"
bench() {  # bench NAME TIMEOUT ARGS...: one run of bench_musicgen.py, table at the end
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 benchmarks/bench_musicgen.py --json "$out/bench_$name.json" "$@" \
    >"$out/bench_$name.log" 2>&1
  echo "== $name (exit $?): $*"
  grep -E '^\||^quantize=' "$out/bench_$name.log" | awk '!seen[$0]++'
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# MLX's CUDA backend records at most MLX_MAX_OPS_PER_BUFFER kernels per CUDA graph (default
# 20); a decoding step is a few hundred kernels, so fewer, larger graphs are faster.
export MLX_MAX_OPS_PER_BUFFER=200
# musicgen-small, 10 s, CFG, batch 1 and 16: float16, 4-bit, the plain path, transformers.
bench small_fp16 290 --duration 10 --batch 1 16 --dtype float16 --quantize 0 4 --plain --repeat 2
# The same without the larger CUDA graphs (MLX's default).
MLX_MAX_OPS_PER_BUFFER=20 bench ops20 60 --duration 10 --batch 1 16 --dtype float16 \
  --no-reference --repeat 2
# musicgen-medium and -large shapes (ours only).
bench sizes 80 --models medium large --duration 10 --batch 1 --dtype float16 --no-reference
# float32 against transformers float32.
bench small_fp32 90 --duration 10 --batch 1 --dtype float32
