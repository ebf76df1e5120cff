"""Time to first audio: MusicGen in fresh processes, phase by phase, ours and transformers.

What a user waits for after typing a command, measured on a checkpoint written to disk by
transformers' ``save_pretrained`` (random weights at the real shapes; nothing is downloaded):

* ours: a fresh Python process imports musicgen, loads the checkpoint with ``musicgen.load``,
  then generates twice (``stream_tokens`` gathered by ``codes_from_steps``, then ``decode``:
  what ``generate`` does), then a third time with another prompt and duration (shapes it has
  not seen). Loading is split into the phases ``musicgen.load`` marks (rag_core.timings: the
  files' headers, building the modules, the codec, the text encoder, the decoder; each
  includes reading and casting its weights), and each generation into the text encoding, the
  first decoding step (tracing, compiling or loading kernels), the other steps and EnCodec;
* the CLI: ``mlx-rag music generate PROMPT --model DIR --duration D``, wall time of the whole
  command (a fresh process: start-up, loading, generation, writing the file), and its phases
  from ``MLX_RAG_TIMINGS=1`` (start-up and imports, plugins, checks, loading, generation,
  EnCodec, normalization, writing the audio and the sidecar; *exit* is the wall time after the
  last phase);
* transformers: a fresh process imports torch and transformers, ``from_pretrained`` the same
  directory and generates twice with the same options (CFG 3, top-k 250).

Each fresh process of ours runs once with an empty kernel cache (a new ``MLX_RAG_KERNEL_CACHE``
folder: what the very first run after installing pays) and then ``--runs`` times with that
cache filled by the earlier runs (every later run). On a machine without a GPU the same runs
measure the CPU. The children run without PYTHONDONTWRITEBYTECODE, so that after the first run
they import from bytecode, as an installed package does.

    python benchmarks/bench_cold.py                        # small, 10 s, float32, 2 warm runs
    python benchmarks/bench_cold.py --duration 1 --runs 1  # the 2-core CPU (a generation is slow)
    python benchmarks/bench_cold.py --child ours ...       # one fresh process (used internally)
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

PROMPT = "lofi piano, rain"
OTHER_PROMPT = "epic brass with drums and a calm piano"
ROOT = Path(__file__).resolve().parent.parent
MLX_RAG = [sys.executable, "-c", "import sys; from rag_core.cli import main; sys.exit(main())"]


def child_ours(args) -> dict:
    """One fresh process of ours: import, load, three generations, phase by phase."""
    import mlx.core as mx
    import musicgen
    from rag_core.timings import reset_timeline, timeline

    out = {"import_s": time.perf_counter() - STARTED}
    start = time.perf_counter()
    reset_timeline()
    model = musicgen.load(args.checkpoint, dtype=args.dtype, quantize=args.quantize or None,
                          progress=False)  # fmt: skip
    out["load_s"] = time.perf_counter() - start
    out |= {f"{name.replace('.', '_')}_s": s for name, s in timeline() if name.startswith("load.")}
    out["peak_load_gb"] = mx.get_peak_memory() / 1e9
    text_s = []
    encode_text = model.encode_text

    def timed_encode_text(prompts):  # the generation's own call, evaluated to be timed
        begin = time.perf_counter()
        states = encode_text(prompts)
        mx.eval(states)
        text_s.append(time.perf_counter() - begin)
        return states

    model.encode_text = timed_encode_text
    runs = [("first", PROMPT, args.duration), ("second", PROMPT, args.duration),
            ("other", OTHER_PROMPT, round(args.duration * 0.7, 2))]  # fmt: skip
    for name, prompt, duration in runs:
        start = time.perf_counter()
        steps = model.stream_tokens(prompt, duration=duration, seed=0)
        first = next(steps)
        mx.eval(first.tokens)
        first_step = time.perf_counter()
        codes = musicgen.codes_from_steps(itertools.chain([first], steps))
        tokens = time.perf_counter()
        audio = model.decode(codes)
        end = time.perf_counter()
        assert audio.shape[-1] == codes.shape[-1] * model.codec.hop_length
        out[f"{name}_s"] = end - start
        out[f"{name}_tokens_s"] = tokens - start
        out[f"{name}_text_s"] = text_s[-1]
        out[f"{name}_step1_s"] = first_step - start - text_s[-1]
        out[f"{name}_steps_s"] = tokens - first_step
        out[f"{name}_decode_s"] = end - tokens
        if name == "first":
            out["peak_first_gb"] = mx.get_peak_memory() / 1e9
    out["to_first_audio_s"] = out["import_s"] + out["load_s"] + out["first_s"]
    out["first_over_second"] = out["first_s"] / out["second_s"]
    return out


def child_transformers(args) -> dict:
    """One fresh process of transformers on the same directory: import, load, two generations."""
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    out = {"import_s": time.perf_counter() - STARTED}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    model = MusicgenForConditionalGeneration.from_pretrained(args.checkpoint, dtype=dtype)
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    if device == "cuda":
        torch.cuda.synchronize()
    out["load_s"] = time.perf_counter() - start
    codec = model.config.audio_encoder
    hop = int(torch.tensor(codec.upsampling_ratios).prod())
    frames = round(args.duration * codec.sampling_rate / hop)
    for name in ("first", "second"):
        start = time.perf_counter()
        inputs = tokenizer([PROMPT], padding=True, return_tensors="pt").to(device)
        torch.manual_seed(0)
        with torch.no_grad():
            audio = model.generate(
                **inputs,
                do_sample=True,
                guidance_scale=3.0,
                top_k=250,
                max_new_tokens=frames + model.decoder.num_codebooks - 1,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        out[f"{name}_s"] = time.perf_counter() - start
        assert audio.shape[-1] == frames * hop, audio.shape
    out["to_first_audio_s"] = out["import_s"] + out["load_s"] + out["first_s"]
    out["first_over_second"] = out["first_s"] / out["second_s"]
    return out


def cli_phases(stderr: str, wall: float) -> dict:
    """The phases of an `mlx-rag` command from its MLX_RAG_TIMINGS line: each one, the time
    from the process's start until the model was loaded, and the exit (the wall time after the
    last phase)."""
    line = next((x for x in stderr.splitlines() if x.startswith("Timings: ")), None)
    if line is None:
        return {}
    listed, _, total = line[len("Timings: ") :].rpartition("; ")
    phases = [(name, float(s)) for name, s in re.findall(r"([\w. -]+?) ([\d.]+) s(?:, |$)", listed)]
    out = {f"cli_{re.sub(r'[^a-z0-9]+', '_', name).strip('_')}_s": s for name, s in phases}
    names = [name for name, _ in phases]
    if "load" in names:
        out["cli_to_model_s"] = sum(s for _, s in phases[: names.index("load") + 1])
    out["cli_process_s"] = float(total.split()[0])
    out["cli_exit_s"] = wall - out["cli_process_s"]
    return out


def fresh(argv: list[str], env: dict | None = None, timeout: float = 900) -> tuple[float, dict]:
    """Run a fresh process; (wall seconds, its RESULT json or the error)."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return wall, json.loads(line[7:])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return wall, {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def write_checkpoint(path: Path, size: str) -> Path:
    """A random MusicGen checkpoint at musicgen-small's (or the tests' tiny) shapes, written by
    transformers' save_pretrained with tokenizer files, as the hub repos lay it out."""
    sys.path.insert(0, str(ROOT))
    from tests.musicgen import checkpoints as c

    if size == "tiny":
        return path if (path / "config.json").is_file() else c.write_tiny_musicgen(path)
    return c.write_hub_shaped(path, "small")


def versions() -> dict:
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "machine": platform.machine(),
            "command": " ".join(sys.argv)}  # fmt: skip
    probe = ("import json, mlx.core as mx; print(json.dumps({'mlx': mx.__version__, "
             "'device': str(mx.default_device())}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    info.update(json.loads(done.stdout or "{}"))
    try:
        import torch
        import transformers

        info |= {"torch": torch.__version__, "transformers": transformers.__version__}
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def run_all(args, mlx_version: str) -> list[dict]:
    checkpoint = write_checkpoint(Path(args.checkpoint), args.size)
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    cache = Path(args.kernel_cache) if args.kernel_cache else work / "kernels"
    # MLX_PTX_CACHE_DIR: the folder musicgen picks under MLX_RAG_KERNEL_CACHE, named for MLX
    # itself too, so that a version without that setting caches there as well.
    env = dict(os.environ, MLX_RAG_KERNEL_CACHE=str(cache), PYTHONUNBUFFERED="1",
               MLX_PTX_CACHE_DIR=str(cache / f"mlx-{mlx_version}"))  # fmt: skip
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    me = [sys.executable, str(Path(__file__).resolve()), "--checkpoint", str(checkpoint),
          "--duration", str(args.duration), "--dtype", args.dtype]  # fmt: skip
    rows = []

    def record(label: str, wall: float, result: dict) -> None:
        rows.append({"run": label, "wall_s": wall} | result)
        print(json.dumps(rows[-1]), flush=True)

    if "ours" in args.impl:
        for quantize in args.quantize:
            q = ["--quantize", str(quantize)] if quantize else []
            tag = f"ours {args.dtype}" + (f" q{quantize}" if quantize else "")
            if quantize == args.quantize[0] and not args.kernel_cache:
                record(f"{tag}, empty kernel cache", *fresh([*me, "--child", "ours", *q], env))
            for i in range(args.runs):
                record(f"{tag}, run {i + 1}", *fresh([*me, "--child", "ours", *q], env))
    if "cli" in args.impl:
        command = [*MLX_RAG, "music", "generate", PROMPT, "--model", str(checkpoint),
                   "--duration", str(args.duration), "--seed", "0", "--overwrite",
                   "--output", str(work / "track.wav")]  # fmt: skip
        for i in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True,
                                  env=dict(env, MLX_RAG_TIMINGS="1"))  # fmt: skip
            wall = time.perf_counter() - start
            result = {} if done.returncode == 0 else {"error": done.stderr.strip()[-400:]}
            record(f"cli music generate, run {i + 1}", wall, result | cli_phases(done.stderr, wall))
    if "transformers" in args.impl:
        for i in range(args.reference_runs):
            record(f"transformers {args.dtype}, run {i + 1}",
                   *fresh([*me, "--child", "transformers"], env))  # fmt: skip
    return rows


LOAD_COLUMNS = [("load_s", "load s"), ("load_files_s", "files"), ("load_modules_s", "modules"),
                ("load_codec_s", "codec"), ("load_text_encoder_s", "text encoder"),
                ("load_decoder_s", "decoder")]  # fmt: skip
GENERATION_COLUMNS = [
    (f"{run}_{part}_s", f"{label} {what}")
    for run, label in (("first", "1st"), ("second", "2nd"))
    for part, what in (("text", "text"), ("step1", "step 1"), ("steps", "other steps"),
                       ("decode", "EnCodec"))
]  # fmt: skip
CLI_COLUMNS = [("wall_s", "wall s"), ("cli_start_up_s", "start-up"), ("cli_plugins_s", "plugins"),
               ("cli_checks_s", "checks"), ("cli_to_model_s", "to model loaded"),
               ("cli_generate_s", "generate"), ("cli_decode_s", "EnCodec"),
               ("cli_normalize_s", "normalize"), ("cli_write_audio_s", "write"),
               ("cli_sidecar_s", "sidecar"), ("cli_exit_s", "exit")]  # fmt: skip


def table(rows: list[dict], cols: list[tuple[str, str]] | None = None) -> str:
    """A Markdown table of ``rows`` (those with at least one of ``cols``' figures)."""
    if cols is not None:
        rows = [r for r in rows if any(isinstance(r.get(k), float) for k, _ in cols[1:])]
        if not rows:
            return ""
    cols = cols or [("wall_s", "wall s"), ("import_s", "import s"), ("load_s", "load s"),
            ("first_s", "1st gen s"), ("first_tokens_s", "1st tokens s"),
            ("first_decode_s", "1st EnCodec s"), ("second_s", "2nd gen s"),
            ("other_s", "other prompt+duration s"), ("to_first_audio_s", "to 1st audio s"),
            ("first_over_second", "1st / 2nd"), ("peak_first_gb", "peak GB")]  # fmt: skip
    lines = ["| run | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.2f}" if isinstance(r.get(k), float) else "-" for k, _ in cols]
        note = f" ({r['error']})" if "error" in r else ""
        lines.append(f"| {r['run']}{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default=str(Path(tempfile.gettempdir()) / "musicgen-cold"),
        help="checkpoint folder (written there first if it holds none)",
    )
    parser.add_argument("--size", default="small", choices=["small", "tiny"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--quantize", type=int, nargs="+", default=[0], choices=[0, 4, 8])
    parser.add_argument("--impl", nargs="+", default=["ours", "cli", "transformers"],
                        choices=["ours", "cli", "transformers"])  # fmt: skip
    parser.add_argument("--runs", type=int, default=2, help="fresh processes with a warm cache")
    parser.add_argument("--reference-runs", type=int, default=1)
    parser.add_argument("--kernel-cache", help="a kernel cache folder to keep using (default: a "
                        "new one, first measured empty)")  # fmt: skip
    parser.add_argument("--json", help="write versions and rows to this file")
    parser.add_argument("--child", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.quantize = args.quantize[0]
        result = (child_ours if args.child == "ours" else child_transformers)(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    info = versions()
    print(json.dumps(info), flush=True)
    rows = run_all(args, info.get("mlx", "unknown"))
    print()
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    print(table(rows))
    for title, cols in (("Loading, phase by phase (s)", LOAD_COLUMNS),
                        ("Generations, phase by phase (s)", GENERATION_COLUMNS),
                        ("The CLI, phase by phase (s)", CLI_COLUMNS)):  # fmt: skip
        detail = table(rows, cols)
        if detail:
            print(f"\n{title}\n{detail}")
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
