#!/usr/bin/env bash
# Issue 16's GPU rows in two commands of under 9 minutes each on a host with two GPUs, from a
# fresh machine: installs MLX and the wheels the image lacks (no network), then benchmarks.
#   bash benchmarks/gpu_session.sh OUT A   # kernel tests; musicgen-small batch 1 (ours float16,
#                                          # transformers, fast-musicgen) and batches 64-256;
#                                          # a large batch's step by parts
#   bash benchmarks/gpu_session.sh OUT B   # music batch on 1 GPU vs 2 ranks on 2 GPUs;
#                                          # musicgen-medium and -large at batch 1 (all three)
#   bash benchmarks/gpu_session.sh OUT A --dry-run   # this script's logic on a CPU machine:
#                                          # no install, tiny sizes, the same steps
# Needs MLX with its CUDA backend importable (or MLX_INSTALL: a command that installs it, run
# when `import mlx.core` fails), torch and transformers; WHEELS: an optional folder of wheels
# installed first with no network (e.g. fast-musicgen, the server's wheels, this project's
# wheels for their entry points) into SITE (default /root/site). Writes to OUT
# session_PART.log (everything) and a JSON per benchmark; prints compact tables. Every step
# has a timeout, and every step's is cut to what is left of the part's DEADLINE seconds.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT A|B [--dry-run]}
part=${2:?usage: gpu_session.sh OUT A|B [--dry-run]}
dry=${3:-}
[[ $part == A || $part == B ]] || { echo "part must be A or B, got $part" >&2; exit 2; }
mkdir -p "$out"
export OUT=$out  # where the probes write their JSON
log="$out/session_$part.log"
: >"$log"
start=$SECONDS
deadline=${DEADLINE:-530}
py=${PY:-python3}
root=$PWD
ckpt=${CHECKPOINT_ROOT:-/root/ckpt}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export MLX_MAX_OPS_PER_BUFFER=200 MLX_RAG_KERNEL_CACHE=${MLX_RAG_KERNEL_CACHE:-/tmp/musicgen-kernels}

say() { echo "$*" | tee -a "$log"; }
limit() {  # limit SECONDS: SECONDS, or what is left before the deadline (less 10 s)
  local left=$((deadline - (SECONDS - start) - 10))
  ((left < $1)) && echo $((left > 1 ? left : 1)) || echo "$1"
}
step() {  # step NAME SECONDS FILTER COMMAND...: run it (output to the log), show FILTER's lines
  local name=$1 seconds filter=$3 rc t0=$SECONDS
  seconds=$(limit "$2")
  shift 3
  echo "=== $name (limit ${seconds}s): $*" >>"$log"
  timeout "$seconds" "$@" >>"$log" 2>&1
  rc=$?
  say "== $name: exit $rc in $((SECONDS - t0)) s$([[ $rc == 124 ]] && echo ' (TIMED OUT)')"
  [[ -n $filter ]] && sed -n "/^=== $name /,\$p" "$log" | grep -E "$filter" | awk '!seen[$0]++'
  return $rc
}

if [[ $dry == --dry-run ]]; then
  # CPU sizes: the same steps and flags, seconds instead of minutes; checkpoints in /tmp.
  py=${PY:-$root/.venv/bin/python}
  ckpt=${CHECKPOINT_ROOT:-/tmp/gpu-session-ckpt}
  dur=0.4 big="2 4" jobs=4 jobs_batch=2 sizes="small" dt=float32 rep=1
else
  dur=10 big="64 128 256" jobs=256 jobs_batch=64 sizes="medium large" dt=float16 rep=2
  site=${SITE:-/root/site}
  if ! PYTHONPATH=$site $py -c 'import mlx.core' 2>/dev/null; then
    if [[ -z ${MLX_INSTALL:-} ]]; then
      say "MLX does not import: install mlx with its CUDA backend, or set MLX_INSTALL to a"
      say "command that does"
      exit 2
    fi
    step install-mlx "$(limit 150)" '^mlx ' bash -c "$MLX_INSTALL" || exit 1
  fi
  if [[ -n ${WHEELS:-} ]]; then
    step install-wheels 90 '' $py -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl || exit 1
  fi
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
fi
# The source tree first (this commit's code), then the installed wheels (MLX, the entry points
# of the two packages: `mlx-rag music batch` finds its plugin through them).
export PYTHONPATH=$root/packages/rag_core/src:$root/packages/musicgen/src:$root:${SITE:-/root/site}
export PATH=${SITE:-/root/site}/bin:$PATH
say "commit $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-70); part $part; $($py -c \
  'import torch, transformers, mlx.core as mx; print("mlx", mx.__version__, mx.default_device(),
  "gpus", mx.device_count(mx.gpu), "torch", torch.__version__, "transformers",
  transformers.__version__)' 2>&1 | tail -1)"

table='^\| |^checkpoint '
bench() {  # bench NAME SECONDS ARGS...: bench_musicgen.py, its JSON into OUT
  local name=$1 seconds=$2
  shift 2
  step "$name" "$seconds" "$table" $py benchmarks/bench_musicgen.py --json "$out/$name.json" "$@"
}

if [[ $part == A ]]; then
  # musicgen-small from a save_pretrained checkpoint: ours (float16), fast-musicgen, transformers.
  bench small_b1 200 --models small --checkpoint-root "$ckpt" --duration $dur --batch 1 \
    --dtype $dt --fast-musicgen --repeat $((rep + 1))
  # Large batches, one key per prompt as `music batch` samples (ours only).
  bench small_batch 150 --models small --checkpoint-root "$ckpt" --duration $dur --batch $big \
    --dtype $dt --per-row-keys --no-reference --repeat 1
  # A large batch's decoding step by parts (attention per block size, projections, ...).
  [[ $dry == --dry-run ]] || step probe-large-batch 60 '_ms: ' $py \
    benchmarks/probe_musicgen_kernels.py --large-batch
  # The CUDA kernels against plain MLX (skipped without CUDA); float32 matmuls in full float32.
  MLX_ENABLE_TF32=0 step kernel-tests 240 '^FAILED|passed|failed|skipped|error' \
    $py -m pytest -q -p no:cacheprovider -rf tests/musicgen/test_kernels.py \
    tests/musicgen/test_kernels_step.py tests/musicgen/test_decoder_step.py \
    tests/musicgen/test_fast_path.py \
    -k "kernel or fused or half_precision or step"
else
  # `music batch`: the same jobs (fixed seeds, the same batches) by 1 process on 1 GPU, then by
  # 2 ranks (mlx.launch, ring over loopback) on 2 GPUs; each rank picks its GPU by its local rank.
  step checkpoint-small 90 '' $py -c "import sys; sys.path.insert(0, 'benchmarks')
import bench_musicgen as b; print(b.write_checkpoint('$ckpt/musicgen-small', 'small'))"
  ranks() {
    step "ranks-$1" 200 '^\||^2 ranks|^outputs' $py benchmarks/bench_batch.py --ranks-vs-one \
      --pin "$1" --checkpoint "$ckpt/musicgen-small" --jobs $jobs --duration $dur \
      --processes-batch-size $jobs_batch --dtype $dt --json "$out/ranks.json"
  }
  ranks index
  rc=$?
  if [[ $rc != 0 && $rc != 3 ]]; then  # 3: ran, outputs differ; else retry, pinned by CUDA
    say "(per-rank GPU by local rank failed: again with CUDA_VISIBLE_DEVICES per rank)"
    ranks visible
  fi
  # musicgen-medium and -large, batch 1, from checkpoints written here by save_pretrained
  # (float16, random weights): ours, fast-musicgen (same config), transformers (same files).
  for size in $sizes; do
    bench "$size"_b1 $([[ $size == large ]] && echo 260 || echo 170) --models "$size" \
      --checkpoint-root "$ckpt" --duration $dur --batch 1 --dtype $dt --fast-musicgen \
      --repeat $rep
  done
fi
say "part $part done in $((SECONDS - start)) s; files: $(ls "$out" | tr '\n' ' ')"
