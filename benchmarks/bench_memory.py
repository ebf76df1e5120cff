"""MusicGen peak memory phase by phase, at the real shapes of musicgen-small/-medium/-large.

Random weights (memory depends on shapes, not values; see bench_musicgen.py), so it runs
anywhere in seconds, the CPU included (``mx.get_peak_memory`` counts on every backend). A
generation's peak is the resident weights plus the largest of its phases' transient peaks:

* text: tokenizer + T5 + projection of the prompts (batch prompts, CFG's second branch is zeros);
* steps: the first ``--steps`` decoding steps with the cache sized for ``--duration`` seconds;
* codec: EnCodec decoding of ``--duration`` seconds of codes (``MusicGen.decode``).

    python benchmarks/bench_memory.py --dtype float16 --quantize 0 4 --duration 10
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from itertools import islice
from pathlib import Path

import mlx.core as mx
from bench_musicgen import GUIDANCE, TOP_K, build_ours, prompts_for
from mlx.utils import tree_flatten
from musicgen.delay import codebook_delays
from musicgen.generate import generate_step
from musicgen.quantize import quantize_model
from musicgen.sampling import make_sampler


def phase_peaks(model, batch: int, duration: float, steps: int, compile: bool = True) -> dict:
    """Resident weights and each phase's peak above them, in bytes."""
    gc.collect()
    mx.clear_cache()
    weights = mx.get_active_memory()
    prompts = prompts_for(batch)

    def peak_of(run) -> int:
        gc.collect()
        mx.clear_cache()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        run()
        gc.collect()
        return mx.get_peak_memory() - base

    def text():
        mx.eval(model.encode_text(prompts))

    def decoding():
        states, mask = model.encode_text(prompts)
        mx.eval(states, mask)
        generator = generate_step(
            model.decoder,
            states,
            mask,
            num_frames=round(duration * model.frame_rate),
            guidance_scale=GUIDANCE,
            sampler=make_sampler(1.0, TOP_K, 0.0),
            key=mx.random.key(0),
            delays=codebook_delays(model.num_codebooks, model.audio_channels),
            compile=compile,
        )
        for step in islice(generator, steps):
            mx.eval(step.tokens)

    frames = round(duration * model.frame_rate)
    vocab = model.config.decoder.vocab_size
    codes = mx.random.randint(0, vocab, (batch, model.num_codebooks, frames), key=mx.random.key(1))
    mx.eval(codes)

    def codec():
        mx.eval(model.decode(codes))

    return {
        "weights": weights,
        "parts": {
            part: sum(v.nbytes for _, v in tree_flatten(getattr(model, part).parameters()))
            for part in ("text_encoder", "decoder", "codec")
        },
        "text": peak_of(text),
        "steps": peak_of(decoding),
        "codec": peak_of(codec),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--dtype", nargs="+", default=["float16"],
                        choices=["float32", "float16", "bfloat16"])  # fmt: skip
    parser.add_argument("--quantize", type=int, nargs="+", default=[0, 4], choices=[0, 4, 8])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4, help="decoding steps to measure")
    parser.add_argument("--plain", action="store_true", help="decode with compile=False")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    print(f"device {mx.default_device()}, mlx {mx.__version__}, musicgen-{args.model}, "
          f"{args.duration:g} s, batch {args.batch}, CFG")  # fmt: skip
    print("| dtype | quant | weights GB (T5 / decoder / codec) | text GB | steps GB | codec GB "
          "| peak GB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    results = []
    for dtype in args.dtype:
        for bits in args.quantize:
            model = build_ours(args.model, dtype)
            if bits:
                quantize_model(model, bits)
                mx.eval(model.text_encoder.parameters(), model.decoder.parameters())
            r = phase_peaks(model, args.batch, args.duration, args.steps, not args.plain)
            r |= {"dtype": dtype, "quantize": bits}
            r["peak"] = r["weights"] + max(r["text"], r["steps"], r["codec"])
            results.append(r)
            parts = " / ".join(f"{r['parts'][p] / 1e9:.3f}" for p in r["parts"])
            print(
                f"| {dtype} | {bits or '-'} | {r['weights'] / 1e9:.3f} ({parts}) "
                f"| {r['text'] / 1e9:.3f} | {r['steps'] / 1e9:.3f} | {r['codec'] / 1e9:.3f} "
                f"| {r['peak'] / 1e9:.3f} |",
                flush=True,
            )
            del model
            gc.collect()
            mx.clear_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
