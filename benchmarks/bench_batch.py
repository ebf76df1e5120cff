"""Batch generation throughput, in seconds of audio generated per second of wall time.

    python benchmarks/bench_batch.py [--checkpoint DIR] [--jobs 32] [--duration 4]

1. One process, batch sizes 1, 4 and 16: ``musicgen.plugin.batch.run_batch`` in this process, the
   model loaded (and a warm-up batch run) before the clock starts.
2. One process vs two: ``mlx-rag music batch`` alone and under
   ``mlx.launch -n 2 --backend ring`` on this machine, end to end (start-up and model loading
   included) and within the run (rank 0's own timer, from reading the jobs to the manifest).

3. ``--ranks-vs-one``: only the comparison of 2, on a host with two GPUs: the same jobs (fixed
   seeds, the same batches) run by one process on one GPU, then by two ranks under mlx.launch
   (ring backend over loopback; the ranks exchange only the plan and the manifest), one GPU each.
   Prints audio s/s of each and their ratio, and checks that every audio file of the two runs is
   byte-identical (where bytes differ, whether the samples are equal). ``--pin index``: each rank
   gets the GPU of its local rank from ``mlx-rag`` itself (what a user's run does);
   ``--pin visible``: CUDA_VISIBLE_DEVICES=MLX_RANK set per rank by a wrapper instead.
   Exit status 3 where the outputs differ.

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


def release_models() -> None:
    """Unload what ``in_process`` loaded and give MLX's cached buffers back, so that the
    fresh processes timed next find the device's memory free."""
    from rag_core import get_registry

    get_registry().unload_all()


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
               batch_size: int, extra: tuple[str, ...] = (), pin: str = "index") -> dict:
    """One `mlx-rag music batch` run (under mlx.launch when processes > 1); ``extra``: more
    flags for it; ``pin="visible"``: each rank sees only GPU MLX_RANK (CUDA_VISIBLE_DEVICES)."""
    command = [*MLX_RAG, "music", "batch", str(jobs), "--out", str(out), "--model",
               str(checkpoint), "-b", str(batch_size), "--no-progress", "--json", *extra]
    if processes > 1:
        if pin == "visible":  # mlx.launch exports MLX_RANK before it runs the command
            command = ["bash", "-c", 'CUDA_VISIBLE_DEVICES=$MLX_RANK exec "$@"', "-", *command]
        launch = [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]
        command = [*launch, "-n", str(processes), "--backend", "ring", "--hosts",
                   "127.0.0.1", "--starting-port", str(free_port(processes)), "--", *command]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    text = result.stdout
    try:
        summary = json.loads(text[text.index("{"): text.rindex("}") + 1])
        if result.returncode:
            raise ValueError
    except ValueError:
        sys.exit(f"the run failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
                 f"{result.stderr[-3000:]}")
    audio = summary["audio_seconds"]
    busy = max(busy_seconds(out).values())
    return {"setup": f"{processes} process{'es' if processes > 1 else ''}, batch size "
                     f"{batch_size}", "audio_s": audio, "wall_s": wall, "rate": audio / wall,
            "run_s": summary["seconds"], "run_rate": audio / summary["seconds"],
            "busy_s": busy, "busy_rate": audio / busy, "devices": devices(out),
            "log": [line for line in result.stderr.splitlines() if "generating on" in line]}


def devices(out: Path) -> dict[str, list[str]]:
    """Per rank, the devices its sidecars record."""
    found: dict[str, set[str]] = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        batch = json.loads((out / entry["sidecar"]).read_text())["batch"]
        found.setdefault(str(batch["rank"]), set()).add(batch.get("device", "?"))
    return {rank: sorted(names) for rank, names in sorted(found.items())}


def compare_outputs(one: Path, two: Path) -> dict:
    """Audio files of two runs: how many are byte-identical; of the others, how many have equal
    samples (the files then differ only in metadata) and the largest sample difference."""
    import numpy as np
    import soundfile

    names = sorted(p.name for p in one.iterdir() if p.suffix in (".wav", ".flac", ".ogg"))
    missing = [n for n in names if not (two / n).is_file()]
    report = {"files": len(names), "missing": missing, "identical_bytes": 0,
              "equal_samples": 0, "different": [], "max_abs_difference": 0.0}
    for name in names:
        if name in missing:
            continue
        if (one / name).read_bytes() == (two / name).read_bytes():
            report["identical_bytes"] += 1
            continue
        a, _ = soundfile.read(one / name, dtype="float32", always_2d=True)
        b, _ = soundfile.read(two / name, dtype="float32", always_2d=True)
        if a.shape == b.shape and np.array_equal(a, b):
            report["equal_samples"] += 1
        else:
            report["different"].append(name)
            if a.shape == b.shape:
                report["max_abs_difference"] = max(report["max_abs_difference"],
                                                   float(np.abs(a - b).max()))
    return report


def ranks_vs_one(args, work: Path, checkpoint: Path) -> dict:
    """One process on one GPU, then two ranks on two GPUs, over the same jobs."""
    jobs = write_jobs(work / "jobs.jsonl", args.jobs, args.duration)
    extra = ("--dtype", args.dtype) if args.dtype else ()
    one = as_command(jobs, checkpoint, work / "p1", 1, args.processes_batch_size, extra)
    two = as_command(jobs, checkpoint, work / "p2", 2, args.processes_batch_size, extra,
                     args.pin)
    return {"one": one, "two": two, "ratio_run": two["run_rate"] / one["run_rate"],
            "ratio_wall": two["rate"] / one["rate"],
            "outputs": compare_outputs(work / "p1", work / "p2")}


def print_ranks_vs_one(result: dict, args) -> None:
    print("| setup | audio (s) | wall (s) | audio s / s | within the run (s) | audio s / s "
          "| devices per rank |\n|---|---:|---:|---:|---:|---:|---|")
    for key in ("one", "two"):
        r = result[key]
        print(f"| {r['setup']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['rate']:.1f} | "
              f"{r['run_s']:.1f} | {r['run_rate']:.1f} | {r['devices']} |")
    o = result["outputs"]
    print(f"\n2 ranks / 1 process: {result['ratio_run']:.2f}x within the run, "
          f"{result['ratio_wall']:.2f}x wall (pin: {args.pin})")
    print(f"outputs: {o['identical_bytes']} of {o['files']} audio files byte-identical, "
          f"{o['equal_samples']} more with equal samples (metadata differs), "
          f"{len(o['different'])} different (max |diff| {o['max_abs_difference']:.3g}), "
          f"{len(o['missing'])} missing")


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
    parser.add_argument("--ranks-vs-one", action="store_true",
                        help="only 1 process on 1 GPU vs 2 ranks on 2 GPUs, outputs compared")
    parser.add_argument("--pin", choices=["index", "visible"], default="index",
                        help="how each of the 2 ranks gets its GPU (see above)")
    parser.add_argument("--dtype", help="--dtype of `music batch` (default: its own)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
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
        if args.ranks_vs_one:
            result = ranks_vs_one(args, work, checkpoint)
            print_ranks_vs_one(result, args)
            if args.json:
                args.json.write_text(json.dumps(result, indent=1))
            failed = result["outputs"]["different"] or result["outputs"]["missing"]
            sys.exit(3 if failed else 0)  # 1: a run failed
        jobs = write_jobs(work / "jobs.jsonl", args.jobs, args.duration)
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        rows = in_process(jobs, checkpoint, work, sizes, args.duration)
        release_models()  # the commands below load their own (on a GPU: its memory too)
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
