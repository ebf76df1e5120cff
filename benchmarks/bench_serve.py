"""Time to first audio: the first and second request to `mlx-rag serve`, and a fresh
`mlx-rag music generate` process, in one run on the same checkpoint.

    python benchmarks/bench_serve.py                          # the smoke checkpoint
    python benchmarks/bench_serve.py --model DIR              # any MusicGen folder
    python benchmarks/bench_serve.py --write-small DIR        # write a random musicgen-small-
                                                              # shaped one there (transformers'
                                                              # save_pretrained), then use it

Each server request is POST /api/music, polling GET /api/jobs/{id} every 10 ms, then
GET /api/tracks/{id}/audio: the clock runs from sending the request until the whole audio file
has arrived. The first request loads the model into the server's registry; the second finds it
loaded. The CLI row runs `mlx-rag music generate` in a new process, from its start until it
exits with the file written (Python start-up, imports, loading, generating, writing). The
phases come from each track's sidecar (``timings``). Prints a Markdown table for
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

MLX_RAG = [sys.executable, "-c", "import sys; from rag_core.cli import main; sys.exit(main())"]
PROMPT = "lofi piano with rain, slow tempo"
POLL_S = 0.01


def write_small(path: Path) -> Path:
    """A musicgen-small-shaped checkpoint with random weights, written by transformers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.musicgen.checkpoints import write_hub_shaped

    return write_hub_shaped(path, "small")


class Server:
    """`mlx-rag serve --port 0` in a subprocess."""

    def __init__(self, env: dict, log: Path):
        start = time.perf_counter()
        self.log = log
        self.process = subprocess.Popen([*MLX_RAG, "serve", "--port", "0"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=log.open("w"))
        while True:
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("Serving on")]
            if lines:
                self.url = lines[0].split()[2]
                break
            if self.process.poll() is not None:
                sys.exit(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.01)
        self.start_s = time.perf_counter() - start

    def call(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=3600) as response:
            return response.read()

    def first_audio(self, body: dict) -> tuple[float, dict]:
        """Seconds from the request until the audio has arrived, and the track's sidecar."""
        start = time.perf_counter()
        job = json.loads(self.call("POST", "/api/music", body))
        while job["status"] not in ("done", "failed", "cancelled"):
            time.sleep(POLL_S)
            job = json.loads(self.call("GET", f"/api/jobs/{job['id']}"))
        if job["status"] != "done":
            sys.exit(f"the job {job['status']}: {job['error']}")
        track = job["result"]["track"]
        audio = self.call("GET", track["audio"])
        seconds = time.perf_counter() - start
        assert len(audio) == track["bytes"]
        return seconds, track["sidecar"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)


def cli_run(env: dict, model: str, duration: float, seed: int, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    result = subprocess.run([*MLX_RAG, "--quiet", "music", "generate", PROMPT, "--model", model,
                             "--duration", f"{duration:g}", "--seed", str(seed), "-o", str(out),
                             "--json"], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the CLI failed:\n{result.stderr}")
    return seconds, json.loads(result.stdout)


def versions() -> str:
    from importlib.metadata import version

    import mlx.core as mx

    names = ("mlx", "mlx-lm", "starlette", "uvicorn")
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {mx.default_device()}; "
            + ", ".join(f"{n} {version(n)}" for n in names)
            + f"; Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--model", type=Path, help="a MusicGen checkpoint folder")
    where.add_argument("--write-small", type=Path, metavar="DIR",
                       help="write a random musicgen-small-shaped checkpoint to DIR, use it")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        if args.write_small:
            model = write_small(args.write_small)
        elif args.model:
            model = args.model
        else:
            from musicgen.plugin.smoke import write_smoke_checkpoint

            model = write_smoke_checkpoint(work / "smoke")
        home = work / "home"
        home.mkdir()
        (home / "config.toml").write_text(f"[tools.music]\nmodel = {json.dumps(str(model))}\n")
        env = {**os.environ, "MLX_RAG_HOME": str(home), "MLX_RAG_CONFIG": str(home / "config.toml"),
               "HF_HUB_OFFLINE": "1"}
        body = {"prompt": PROMPT, "duration": args.duration}
        server = Server(env, work / "server.log")
        try:
            rows = [("request 1 (the server loads the model)",
                     *server.first_audio({**body, "seed": 1})),
                    ("request 2 (the model is loaded)", *server.first_audio({**body, "seed": 2}))]
        finally:
            server.stop()
        rows.append(("fresh CLI process (`mlx-rag music generate`)",
                     *cli_run(env, str(model), args.duration, 3, work / "cli.wav")))

    label = "smoke" if not (args.model or args.write_small) else str(model)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {label} checkpoint, "
          f"{args.duration:g} s of audio; {versions()}")
    print(f"command: python benchmarks/bench_serve.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"server start (once, before request 1): {server.start_s:.2f} s\n")
    print("| run | time to first audio (s) | load (s) | generate (s) | decode (s) | write (s) |"
          " other (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, sidecar in rows:
        t = sidecar["timings"]
        other = seconds - t["total_s"]  # requests and polling, or start-up and imports
        print(f"| {name} | {seconds:.2f} | {t['load_s']:.2f} | {t['generate_s']:.2f} | "
              f"{t['decode_s']:.2f} | {t['write_s']:.2f} | {other:.2f} |")


if __name__ == "__main__":
    main()
