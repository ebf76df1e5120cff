"""Where a MusicGen decoding step's time goes on the GPU (docs/performance.md, H200 section).

    python benchmarks/probe_musicgen_step.py CHECKPOINT anatomy   # ms/step with 24, 12, 0 layers
    python benchmarks/probe_musicgen_step.py CHECKPOINT floor     # MLX's cost per kernel launch
    python benchmarks/probe_musicgen_step.py CHECKPOINT batch     # batches 16-256, per-row keys
    python benchmarks/probe_musicgen_step.py CHECKPOINT decode    # EnCodec's 10 s decode by layer
    python benchmarks/probe_musicgen_step.py CHECKPOINT lstm      # its LSTM layer alone, us a step

CHECKPOINT is a musicgen-small folder (bench_cold.py writes one); the model is loaded in
float16 (``PROBE_Q=4``: 4-bit). Figures go to stdout and $OUT/probe_PART.json.
"""

from __future__ import annotations

import json
import os
import sys
import time

import mlx.core as mx
import musicgen
from musicgen.delay import codebook_delays
from musicgen.generate import generate_step, random_key
from musicgen.sampling import make_sampler

RESULTS: dict[str, float] = {}


def log(name: str, value: float) -> None:
    RESULTS[name] = value
    print(f"{name}: {value:.4f}", flush=True)


def seconds_per_call(call, warm: int = 2, repeats: int = 5) -> float:
    """``call()``'s outputs evaluated, ``warm`` times untimed, then the mean of ``repeats``."""
    for _ in range(warm):
        mx.eval(call())
    mx.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(call())
    mx.synchronize()
    return (time.perf_counter() - start) / repeats


def run(model, prompts: list[str], seconds: float, per_row: bool = False) -> float:
    """One generation; ms per decoding step (the end-to-end seconds are logged by the caller)."""
    delays = codebook_delays(model.num_codebooks, model.audio_channels)
    key = random_key(list(range(len(prompts))) if per_row else 0)
    start = time.perf_counter()
    states, mask = model.encode_text(prompts)
    mx.eval(states, mask)
    steps_start = time.perf_counter()
    frames = [s.frame for s in generate_step(
        model.decoder, states, mask, num_frames=round(seconds * model.frame_rate),
        guidance_scale=3.0, sampler=make_sampler(1.0, 250, 0.0), key=key, delays=delays,
    ) if s.frame is not None]  # fmt: skip
    codes = mx.stack(frames, axis=-1)
    mx.eval(codes)
    steps_end = time.perf_counter()
    mx.eval(model.decode(codes))
    RESULTS["last_e2e_s"] = time.perf_counter() - start
    return (steps_end - steps_start) / (len(frames) + len(delays) - 1) * 1000


def anatomy(model) -> None:
    layers = model.decoder.layers
    for count in (24, 12, 0):
        model.decoder.layers = layers[:count]
        run(model, ["lofi piano, rain"], 4)  # warm-up: traces and kernels
        log(f"ms_per_step_{count}_layers", run(model, ["lofi piano, rain"], 10))
    model.decoder.layers = layers


def floor() -> None:
    x = mx.ones((1024,), mx.float16)
    mx.eval(x)

    def chain():
        y = x
        for _ in range(1000):
            y = y * 1.0001 + 0.0001
        return y

    for _ in range(2):
        mx.eval(chain())
    start = time.perf_counter()
    mx.eval(chain())
    mx.synchronize()
    log("us_per_elementwise_kernel", (time.perf_counter() - start) / 2000 * 1e6)


def batch(model) -> None:
    for size in (16, 64, 128, 256):
        prompts = ["lofi piano, rain"] * size
        run(model, prompts, 2, per_row=True)
        mx.reset_peak_memory()
        log(f"b{size}_ms_per_step", run(model, prompts, 10, per_row=True))
        log(f"b{size}_audio_s_per_s", size * 10 / RESULTS["last_e2e_s"])
        log(f"b{size}_peak_gb", mx.get_peak_memory() / 1e9)


def decode(model) -> None:
    """EnCodec's decode of 10 s (500 frames of random codes), whole and layer by layer."""
    codec = model.codec
    frames = round(10 * model.frame_rate)
    codes = mx.random.randint(0, codec.config.codebook_size, (1, model.num_codebooks, frames))
    log("decode_10s_ms", seconds_per_call(lambda: model.decode(codes)) * 1000)
    totals: dict[str, float] = {}
    for _ in range(3):
        x = codec.quantizer.decode(codes)
        mx.eval(x)
        for index, layer in enumerate(codec.decoder.layers):
            mx.synchronize()
            start = time.perf_counter()
            x = layer(x)
            mx.eval(x)
            mx.synchronize()
            name = f"{index:02d}_{type(layer).__name__}"
            totals[name] = totals.get(name, 0.0) + (time.perf_counter() - start) * 1000 / 3
    for name, value in totals.items():
        log(f"decode_layer_{name}_ms", value)


def lstm(model) -> None:
    """One of EnCodec's LSTM layers alone (float16, one row): us a time step for 50 and 500
    steps, with the one-kernel recurrence where it runs and with the step-by-step loop."""
    from musicgen.encodec.lstm import run_lstm

    layer = next(m for m in model.codec.decoder.layers if hasattr(m, "lstm")).lstm[0]
    size = layer.Wh.shape[1]
    before = os.environ.get("MUSICGEN_KERNELS")
    for kernels_on in ("1", "0"):
        os.environ["MUSICGEN_KERNELS"] = kernels_on
        for steps in (50, 500):
            x = mx.random.normal((1, steps, size)).astype(layer.Wh.dtype)
            elapsed = seconds_per_call(lambda: run_lstm(layer, x, None, None))  # noqa: B023
            log(f"lstm_kernels_{kernels_on}_{steps}_steps_us_per_step", elapsed / steps * 1e6)
    if before is None:
        os.environ.pop("MUSICGEN_KERNELS")
    else:
        os.environ["MUSICGEN_KERNELS"] = before


def main() -> int:
    checkpoint, part = sys.argv[1], sys.argv[2]
    bits = int(os.environ.get("PROBE_Q", "0")) or None
    model = musicgen.load(checkpoint, dtype="float16", quantize=bits, progress=False)
    parts = {"anatomy": anatomy, "floor": lambda _: floor(), "batch": batch, "decode": decode,
             "lstm": lstm}  # fmt: skip
    parts[part](model)
    with open(os.path.join(os.environ.get("OUT", "."), f"probe_{part}.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
