"""Batch generation throughput, in seconds of audio generated per second of wall time.

    python benchmarks/bench_batch.py [--checkpoint DIR] [--jobs 32] [--duration 4]

1. One process, batch sizes 1, 4 and 16: ``musicgen.plugin.batch.run_batch`` in this process, the
   model loaded (and a warm-up batch run) before the clock starts.
2. One process vs two: ``mlx-rag music batch`` alone and under
   ``mlx.launch -n 2 --backend ring`` on this machine, end to end (start-up and model loading
   included) and within the run (rank 0's own timer, from reading the jobs to the manifest).

The default checkpoint is the untrained smoke checkpoint (random weights at musicgen-small's
codec rates: 32 kHz, 50 frames/s, 2048 codes; a small decoder), built in a temporary folder.
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLX_RAG = [sys.executable, "-c", "from rag_core.cli import main; main()"]
PROMPTS = ["lofi piano with rain", "epic brass and drums", "calm ambient pads", "jazz trio",
           "fast techno beat", "sad cello solo", "folk guitar and fiddle", "dark synthwave"]


def write_jobs(path: Path, count: int, duration: float) -> Path:
    lines = [json.dumps({"id": f"job-{i:03d}", "prompt": PROMPTS[i % len(PROMPTS)],
                         "seed": i, "duration": duration}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def in_process(jobs: Path, checkpoint: Path, work: Path, batch_sizes: list[int],
               duration: float) -> list[dict]:
    """Throughput of run_batch at each batch size, model already loaded."""
    from musicgen.plugin.batch import Options, Settings, run_batch

    options = Options.of(model=str(checkpoint), duration=duration)
    warm = write_jobs(work / "warm.jsonl", 2, duration)
    run_batch(Settings(warm, work / "warm", options, batch_size=2))
    rows = []
    for size in batch_sizes:
        start = time.perf_counter()
        summary = run_batch(Settings(jobs, work / f"b{size}", options, batch_size=size))
        seconds = time.perf_counter() - start
        rows.append({"setup": f"1 process, batch size {size} (in process, warm)",
                     "audio_s": summary.audio_seconds, "wall_s": seconds,
                     "rate": summary.audio_seconds / seconds})
    return rows


def free_port(count: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            held = []
            for offset in range(count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free ports")


def as_command(jobs: Path, checkpoint: Path, out: Path, processes: int,
               batch_size: int) -> dict:
    """One `mlx-rag music batch` run (under mlx.launch when processes > 1)."""
    command = [*MLX_RAG, "music", "batch", str(jobs), "--out", str(out), "--model",
               str(checkpoint), "-b", str(batch_size), "--no-progress", "--json"]
    if processes > 1:
        launch = [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]
        command = [*launch, "-n", str(processes), "--backend", "ring", "--hosts",
                   "127.0.0.1", "--starting-port", str(free_port(processes)), "--", *command]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    text = result.stdout
    try:
        summary = json.loads(text[text.index("{"): text.rindex("}") + 1])
    except ValueError:
        sys.exit(f"the run failed:\n{result.stdout}\n{result.stderr}")
    audio = summary["audio_seconds"]
    busy = max(busy_seconds(out).values())
    return {"setup": f"{processes} process{'es' if processes > 1 else ''}, batch size "
                     f"{batch_size}", "audio_s": audio, "wall_s": wall, "rate": audio / wall,
            "run_s": summary["seconds"], "run_rate": audio / summary["seconds"],
            "busy_s": busy, "busy_rate": audio / busy}


def busy_seconds(out: Path) -> dict[int, float]:
    """Per rank, the seconds spent loading, generating, decoding and writing (from the
    manifest's timings; a batch's shared timings are split among its jobs)."""
    busy: dict[int, float] = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        t = entry["timings"]
        shared = t["load_s"] + t["generate_s"] + t["decode_s"]
        busy[entry["rank"]] = (busy.get(entry["rank"], 0.0) + shared / entry["batch_size"]
                               + t["prompt_s"] + t["write_s"])
    return busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="MusicGen folder (default: smoke)")
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per track")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--processes-batch-size", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        os.environ["MLX_RAG_HOME"] = str(work / "home")
        os.environ["MLX_RAG_CONFIG"] = ""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        checkpoint = args.checkpoint
        if checkpoint is None:
            from musicgen.plugin.smoke import write_smoke_checkpoint

            checkpoint = write_smoke_checkpoint(work / "smoke")
        jobs = write_jobs(work / "jobs.jsonl", args.jobs, args.duration)
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        rows = in_process(jobs, checkpoint, work, sizes, args.duration)
        for processes in [int(p) for p in args.processes.split(",")]:
            rows.append(as_command(jobs, checkpoint, work / f"p{processes}", processes,
                                   args.processes_batch_size))

    import mlx.core as mx

    print(f"{args.jobs} jobs x {args.duration:g} s, {checkpoint if args.checkpoint else 'smoke'}"
          f" checkpoint; mlx {mx.__version__} on {mx.default_device()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs\n")
    print("| setup | audio (s) | wall (s) | audio s / s | within the run (s) | audio s / s | "
          "busy, slowest rank (s) | audio s / s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        run = (f"{r['run_s']:.1f} | {r['run_rate']:.2f} | {r['busy_s']:.1f} | "
               f"{r['busy_rate']:.2f}" if "run_s" in r else "- | - | - | -")
        print(f"| {r['setup']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['rate']:.2f} | "
              f"{run} |")


if __name__ == "__main__":
    main()
