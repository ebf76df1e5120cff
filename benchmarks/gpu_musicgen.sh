#!/usr/bin/env bash
# The MusicGen benchmark on the GPU machine (see docs/performance.md, "MusicGen").
# Run from the repository root after installing MLX there (../shared/gpu/README.md):
#   bash benchmarks/gpu_musicgen.sh [OUT_DIR]
# Writes bench_*.json and logs to OUT_DIR (default $OUT, else ./out) and prints the tables.
set -uo pipefail
out="${1:-${OUT:-out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:-}:$PWD/packages/rag_core/src:$PWD/packages/musicgen/src"
python3 -c 'import mlx.core as mx, torch; print("mlx", mx.__version__, mx.default_device(), "torch", torch.__version__, torch.cuda.get_device_name())'
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
# musicgen-small, 10 s, batch 1 and 16, CFG: float16 (and 4-bit), plain path, transformers.
timeout 420 python3 benchmarks/bench_musicgen.py --duration 10 --batch 1 16 --dtype float16 \
    --quantize 0 4 --plain --repeat 3 --json "$out/bench_small_fp16.json" 2>&1 | tee "$out/bench_small_fp16.log"
if [ "${FULL:-0}" = 1 ]; then
  timeout 300 python3 benchmarks/bench_musicgen.py --duration 10 --batch 1 16 --dtype float32 bfloat16 \
      --repeat 3 --json "$out/bench_small_fp32_bf16.json" 2>&1 | tee "$out/bench_small_fp32_bf16.log"
  timeout 300 python3 benchmarks/bench_musicgen.py --models medium large --duration 10 --batch 1 16 \
      --dtype float16 --no-reference --repeat 2 --json "$out/bench_medium_large.json" 2>&1 | tee "$out/bench_medium_large.log"
fi
