"""First and second use of the operations a generation starts with, in a fresh process.

On CUDA a process pays on the first use of each kind of operation for loading its kernel
module (lazy loading), and cuDNN sets up a plan for each new convolution shape; the second use
shows what the operation itself costs. Each run is a fresh Python process (this script with
``--child``), float16 inputs at EnCodec's and the decoder's sizes; times are after
``mx.synchronize``, in ms.

    python benchmarks/probe_first_use.py            # 2 fresh processes, lazy module loading
    python benchmarks/probe_first_use.py --eager    # CUDA_MODULE_LOADING=EAGER: all at start

Prints a Markdown table: each operation's first and second use, per run ("start" is the first
product: the device's and cuBLAS's start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child() -> dict[str, float]:
    import mlx.core as mx
    import mlx.nn as nn

    times: dict[str, float] = {}

    def timed(name: str, run) -> None:
        mx.synchronize()
        start = time.perf_counter()
        mx.eval(run())
        mx.synchronize()
        times[name] = (time.perf_counter() - start) * 1000

    half = mx.float16
    small = mx.ones((64, 64), half)
    timed("start (a 64 x 64 product)", lambda: small @ small)
    x = mx.random.normal((1, 500, 128)).astype(half)
    weight = mx.random.normal((1024, 7, 128)).astype(half)
    wide = mx.random.normal((1, 500, 1024)).astype(half)
    lstm = nn.LSTM(1024, 1024)
    lstm.set_dtype(half)
    mx.eval(x, weight, wide, lstm.parameters())
    parts = {
        "reflect pad": lambda: mx.pad(x, [(0, 0), (3, 3), (0, 0)], mode="reflect"),
        "constant pad": lambda: mx.pad(x, [(0, 0), (3, 3), (0, 0)]),
        "product of a strided view": lambda: x[:, 1:497] @ weight[:, 1].T,
        "addmm": lambda: mx.addmm(x[:, :496] @ weight[:, 0].T, x[:, 2:498], weight[:, 2].T),
        "conv1d (cuDNN on CUDA)": lambda: mx.conv1d(x, weight),
        "sigmoid": lambda: mx.sigmoid(wide),
        "ELU (compiled)": lambda: nn.elu(wide),
        "take (gather)": lambda: mx.take(wide[0], mx.array([1, 5, 9]), axis=0),
        "LSTM, 20 steps": lambda: lstm(wide[:, :20])[0],
    }
    for name, run in parts.items():
        timed(f"{name}, first", run)
        timed(f"{name}, second", run)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="fresh processes")
    parser.add_argument("--eager", action="store_true", help="CUDA_MODULE_LOADING=EAGER")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()))
        return 0
    env = dict(os.environ, **({"CUDA_MODULE_LOADING": "EAGER"} if args.eager else {}))
    runs = []
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, __file__, "--child"], capture_output=True,
                              text=True, env=env, timeout=600)  # fmt: skip
        if done.returncode:
            raise SystemExit(done.stderr.strip()[-2000:])
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import mlx.core as mx

    print(f"mlx {mx.__version__}, {mx.default_device()}, "
          f"CUDA_MODULE_LOADING={env.get('CUDA_MODULE_LOADING', 'default')}\n")  # fmt: skip
    print("| operation | " + " | ".join(f"run {i + 1} ms" for i in range(len(runs))) + " |")
    print("|---|" + "---:|" * len(runs))
    for name in runs[0]:
        print(f"| {name} | " + " | ".join(f"{run[name]:.2f}" for run in runs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
