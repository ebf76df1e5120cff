"""MusicGen speed and memory at the real shapes of musicgen-small/-medium/-large, side by side
with transformers.

Random weights (speed depends on shapes, not values): our MLX model is built from the hub
repos' config.json content (``musicgen.plugin.hub_config``) with MLX's default initialization,
and transformers' MusicgenForConditionalGeneration from the same config. No download.

    python benchmarks/bench_musicgen.py                       # CPU: small, 2 s, batch 1, float32
    python benchmarks/bench_musicgen.py --duration 10 --batch 1 16 --dtype float16 \\
        --quantize 0 4 --plain                                # GPU (see docs/performance.md)
    python benchmarks/bench_musicgen.py --models medium large --checkpoint-root /tmp/ckpt \\
        --duration 10 --dtype float16 --fast-musicgen         # checkpoints on disk, per model

With ``--checkpoint`` (musicgen-small) or ``--checkpoint-root`` (DIR/musicgen-NAME for each of
``--models``, written in float16 by transformers' save_pretrained where absent) ours loads the
files with ``musicgen.load`` and transformers with ``from_pretrained``, as users run them.

Each row is one generation of ``--duration`` seconds per prompt with classifier-free guidance
(scale 3, top-k 250 sampling), timed phase by phase: text encoding (tokenizer + T5), the
decoding steps, EnCodec decoding. End to end is their sum (one generation, nothing cached
between generations but compiled kernels); the real-time factor is end-to-end seconds per
second of audio, audio/s is seconds of audio (all prompts) per second. Peak memory is
mx.get_peak_memory() over the generation (weights included). The last column is
transformers' end-to-end time in the same run divided by ours.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

# torch first where it is installed: it loads the cuDNN it was built against, which MLX's CUDA
# backend then shares (the other way round, torch finds MLX's older cuDNN and refuses to run).
with contextlib.suppress(ImportError):
    import torch  # noqa: F401

import mlx.core as mx
import musicgen.decoder
import musicgen.kernels
import numpy as np
from mlx.utils import tree_flatten
from musicgen.config import MusicGenConfig, dtype_from_name
from musicgen.decoder import MusicGenDecoder, cross_attention_bias
from musicgen.delay import apply_delay, codebook_delays, num_steps
from musicgen.encodec import EncodecConfig, EncodecModel
from musicgen.encodec.seanet import EncodecEncoder
from musicgen.generate import generate_step, random_key
from musicgen.model import MusicGen
from musicgen.plugin import HUB_MODELS, hub_config
from musicgen.quantize import quantize_model
from musicgen.sampling import make_sampler
from musicgen.t5 import T5Encoder
from musicgen.tokenizer import PromptTokenizer

PROMPTS = [
    "80s pop track with bassy drums and synth",
    "90s rock song with loud guitars and heavy drums",
    "lofi slow bpm electro chill with organic samples",
    "a light and cheerly EDM track, with syncopated drums, aery pads, and strong emotions",
    "calm piano",
]
GUIDANCE = 3.0
TOP_K = 250


@dataclass
class Row:
    model: str
    impl: str  # "mlx" (compiled), "mlx-unfused" (compiled, MUSICGEN_KERNELS=0), "mlx-plain"
    # (compile=False) or "transformers"
    dtype: str
    quantize: int
    batch: int
    duration: float
    steps: int
    text_s: float = float("nan")
    step_ms: float = float("nan")
    codec_s: float = float("nan")
    e2e_s: float = float("nan")
    peak_gb: float = float("nan")
    weights_gb: float = float("nan")
    finite: bool | None = None
    components_gb: dict = field(default_factory=dict)  # parameter bytes per sub-model
    runs: list = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.e2e_s / self.duration

    @property
    def audio_per_s(self) -> float:
        return self.batch * self.duration / self.e2e_s


def prompts_for(batch: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def word_tokenizer() -> PromptTokenizer:
    """A word-level tokenizer over the prompts' words with T5's </s>: T5-like lengths."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = sorted({w for p in PROMPTS for w in p.replace(",", " ,").split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PromptTokenizer(tokenizer, pad_id=0)


def config_dict(name: str) -> dict:
    """config.json content of facebook/musicgen-NAME (a fresh copy: transformers edits it)."""
    hidden, layers, heads, _ = HUB_MODELS[f"facebook/musicgen-{name}"]
    return copy.deepcopy(hub_config(hidden, layers, heads))


def transformers_config(values: dict):
    """transformers' MusicgenConfig of config.json content ``values`` (``config_dict``)."""
    from transformers import MusicgenConfig

    return MusicgenConfig(
        text_encoder=values["text_encoder"],
        audio_encoder=values["audio_encoder"],
        decoder=values["decoder"],
    )


def build_ours(name: str, dtype: str, seed: int = 0) -> MusicGen:
    """Our MusicGen at the shapes of facebook/musicgen-NAME, random weights, evaluated."""
    mx.random.seed(seed)
    config = MusicGenConfig.from_dict(config_dict(name))
    text_encoder = T5Encoder(config.text_encoder)
    decoder = MusicGenDecoder(config.decoder, config.text_encoder.d_model)
    codec = EncodecModel(EncodecConfig.from_dict(config.audio_encoder))
    # As musicgen.load does: the codec's encoder stays unloaded until something encodes.
    codec.defer_encoder(lambda: dict(tree_flatten(EncodecEncoder(codec.config).parameters())))
    text_encoder.set_dtype(dtype_from_name(dtype))
    decoder.set_dtype(dtype_from_name(dtype))
    mx.eval(text_encoder.parameters(), decoder.parameters(), codec.parameters())
    return MusicGen(config, word_tokenizer(), text_encoder, decoder, codec)


class WatchFinite:
    """The decoder, recording on the device whether every logit of every call is finite."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.finite = mx.array(True)

    def __getattr__(self, name):
        return getattr(self.decoder, name)

    def __call__(self, *args):
        logits = self.decoder(*args)
        self.finite = self.finite & mx.all(mx.isfinite(logits))
        return logits


def generate_phased(
    model: MusicGen,
    prompts: list[str],
    duration: float,
    *,
    compile: bool = True,
    seed: int = 0,
    temperature: float = 1.0,
    watch: bool = False,
    per_row_keys: bool = False,
) -> dict:
    """One generation, timed phase by phase (syncing between phases); codes and audio too.

    ``per_row_keys``: one random key per prompt, as ``music batch`` samples its jobs."""
    frames = round(duration * model.frame_rate)
    delays = codebook_delays(model.num_codebooks, model.audio_channels)
    mx.synchronize()
    t0 = time.perf_counter()
    states, mask = model.encode_text(prompts)
    mx.eval(states, mask)
    t1 = time.perf_counter()
    decoder = WatchFinite(model.decoder) if watch else model.decoder
    key = random_key([seed + i for i in range(len(prompts))] if per_row_keys else seed)
    steps = generate_step(
        decoder,
        states,
        mask,
        num_frames=frames,
        guidance_scale=GUIDANCE,
        sampler=make_sampler(temperature, TOP_K, 0.0),
        key=key,
        delays=delays,
        compile=compile,
    )
    codes = mx.stack([s.frame for s in steps if s.frame is not None], axis=-1)
    mx.eval(codes)
    t2 = time.perf_counter()
    audio = model.decode(codes)
    mx.eval(audio)
    t3 = time.perf_counter()
    out = {
        "text_s": t1 - t0,
        "steps_s": t2 - t1,
        "codec_s": t3 - t2,
        "e2e_s": t3 - t0,
        "steps": num_steps(frames, delays),
        "codes": codes,
        "audio_finite": bool(mx.all(mx.isfinite(audio)).item()),
    }
    if watch:
        out["logits_finite"] = bool(decoder.finite.item())
    return out


def measure_ours(
    model: MusicGen,
    name: str,
    dtype: str,
    quant: int,
    batch: int,
    args,
    compile: bool = True,
    fused: bool = True,
) -> Row:
    """Our row; ``fused=False`` turns musicgen.kernels off (MUSICGEN_KERNELS=0) for it."""
    saved = os.environ.get("MUSICGEN_KERNELS")
    os.environ["MUSICGEN_KERNELS"] = "1" if fused else "0"
    try:
        return _measure_ours(model, name, dtype, quant, batch, args, compile, fused)
    finally:
        os.environ.pop("MUSICGEN_KERNELS")
        if saved is not None:
            os.environ["MUSICGEN_KERNELS"] = saved


def _measure_ours(model, name, dtype, quant, batch, args, compile, fused) -> Row:
    prompts = prompts_for(batch)
    impl = ("mlx" if fused else "mlx-unfused") if compile else "mlx-plain"
    generate_phased(model, prompts, warmup_duration(args.duration), compile=compile,
                    per_row_keys=args.per_row_keys)  # fmt: skip
    gc.collect()
    weights = mx.get_active_memory()
    row = Row(name, impl, dtype, quant, batch, args.duration, 0, weights_gb=weights / 1e9)
    row.components_gb = {
        part: sum(v.nbytes for _, v in tree_flatten(getattr(model, part).parameters())) / 1e9
        for part in ("text_encoder", "decoder", "codec")
    }
    for i in range(args.repeat):
        mx.reset_peak_memory()
        run = generate_phased(model, prompts, args.duration, compile=compile, seed=i,
                              per_row_keys=args.per_row_keys)  # fmt: skip
        peak = mx.get_peak_memory()
        row.runs.append({k: v for k, v in run.items() if k != "codes"} | {"peak": peak})
    best = min(row.runs, key=lambda r: r["e2e_s"]) if args.best else median_run(row.runs)
    row.steps = best["steps"]
    row.text_s, row.codec_s, row.e2e_s = best["text_s"], best["codec_s"], best["e2e_s"]
    row.step_ms = best["steps_s"] / best["steps"] * 1000
    row.peak_gb = max(r["peak"] for r in row.runs) / 1e9
    if dtype != "float32" and compile:
        check = generate_phased(model, prompts, args.duration, compile=compile, watch=True)
        row.finite = check["logits_finite"] and check["audio_finite"]
    return row


def warmup_duration(duration: float) -> float:
    """Seconds of the untimed first run: on a GPU long enough to compile every kernel, the
    windowed EnCodec decoding's too; on the CPU nothing is compiled, so a token run."""
    return min(duration, 0.2 if mx.default_device() == mx.cpu else 1.2)


def median_run(runs: list[dict]) -> dict:
    order = sorted(runs, key=lambda r: r["e2e_s"])
    return order[len(order) // 2]


def greedy_parity(model: MusicGen, batch: int, duration: float) -> dict:
    """Greedy codes of the compiled path (fused kernels where available) against the plain
    path's (compile=False): the fraction of equal codes and the first frame that differs."""
    prompts = prompts_for(batch)
    fast = generate_phased(model, prompts, duration, temperature=0)["codes"]
    plain = generate_phased(model, prompts, duration, compile=False, temperature=0)["codes"]
    equal = np.array(fast) == np.array(plain)
    differs = np.nonzero(~equal.all(axis=(0, 1)))[0]
    return {
        "batch": batch,
        "frames": equal.shape[-1],
        "equal": float(equal.mean()),
        "first_difference": int(differs[0]) if len(differs) else None,
        "distinct_codes": len(np.unique(np.array(fast))),
    }


def quantization_quality(model: MusicGen, bits: int, duration: float) -> dict:
    """Quantize the model in place as ``musicgen.load(quantize=bits)`` does (decoder, T5);
    return its error against the unquantized model.

    Teacher-forced: guided logits over the same delayed random codes (relative L2 error, max
    absolute error, how often the argmax agrees); free-running: greedy codes from the same
    prompts (fraction of equal codes, and frames until the first difference).
    """
    prompts = prompts_for(2)
    frames = min(round(duration * model.frame_rate), 250)
    delays = codebook_delays(model.num_codebooks, model.audio_channels)
    special = model.config.decoder.special_token_id
    vocab = model.config.decoder.vocab_size
    codes = mx.random.randint(0, vocab, (2, model.num_codebooks, frames), key=mx.random.key(7))
    sequence = apply_delay(codes.astype(mx.int32), delays, special)[:, :, :-1]

    def guided_logits():  # the text is encoded again: quantize_model quantizes T5 too
        states, mask = model.encode_text(prompts)
        guided_states = mx.concatenate([states, mx.zeros_like(states)])
        guided_mask = mx.concatenate([mask, mx.zeros_like(mask)])
        bias = cross_attention_bias(guided_mask, states.dtype)
        cross = model.decoder.cross_kv(guided_states)
        logits = model.decoder(mx.concatenate([sequence, sequence]), cross, bias)
        cond, uncond = logits[:2], logits[2:]
        return uncond + (cond - uncond) * GUIDANCE

    def greedy():
        return generate_phased(model, prompts, frames / model.frame_rate, temperature=0)["codes"]

    reference, reference_codes = guided_logits(), greedy()
    mx.eval(reference, reference_codes)
    quantize_model(model, bits)
    mx.eval(model.decoder.parameters(), model.text_encoder.parameters())
    quantized, quantized_codes = guided_logits(), greedy()
    mx.eval(quantized, quantized_codes)
    ref, q = np.array(reference), np.array(quantized)
    equal = np.array(reference_codes) == np.array(quantized_codes)
    differs = np.nonzero(~equal.all(axis=(0, 1)))[0]
    return {
        "bits": bits,
        "frames": frames,
        "logits_rel_error": float(np.linalg.norm(q - ref) / np.linalg.norm(ref)),
        "logits_max_abs_error": float(np.abs(q - ref).max()),
        "logits_abs_max": float(np.abs(ref).max()),
        "argmax_agreement": float((q.argmax(-1) == ref.argmax(-1)).mean()),
        "greedy_code_agreement": float(equal.mean()),
        "greedy_frames_before_first_difference": int(differs[0]) if len(differs) else frames,
    }


def measure_transformers(name: str, dtype: str, batch: int, args) -> Row:
    """transformers' generate on the same shapes (random init), end to end, same options."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = {"float32": torch.float32, "float16": torch.float16,
                   "bfloat16": torch.bfloat16}[dtype]  # fmt: skip
    values = config_dict(name)
    config = transformers_config(values)
    torch.manual_seed(0)
    checkpoint = checkpoint_for(args, name)
    if checkpoint:  # the same files ours loads, through from_pretrained
        model = MusicgenForConditionalGeneration.from_pretrained(checkpoint, dtype=torch_dtype)
        model = model.to(device).eval()
        ids, mask = load_tokenizer(checkpoint)(prompts_for(batch))
    else:
        model = MusicgenForConditionalGeneration(config).to(device=device, dtype=torch_dtype)
        model = model.eval()
        ids, mask = word_tokenizer()(prompts_for(batch))
    inputs = {
        "input_ids": torch.from_numpy(np.array(ids)).long().to(device),
        "attention_mask": torch.from_numpy(np.array(mask)).long().to(device),
    }
    frame_rate = 50
    delays = codebook_delays(config.decoder.num_codebooks, config.decoder.audio_channels)

    def run(duration: float) -> float:
        frames = round(duration * frame_rate)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            audio = model.generate(
                **inputs,
                do_sample=True,
                guidance_scale=GUIDANCE,
                top_k=TOP_K,
                max_new_tokens=num_steps(frames, delays),
            )
        if device == "cuda":
            torch.cuda.synchronize()
        assert audio.shape[-1] == frames * 640, audio.shape
        return time.perf_counter() - start

    run(warmup_duration(args.duration))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [run(args.duration) for _ in range(args.repeat)]
    row = Row(name, "transformers", dtype, 0, batch, args.duration, 0)
    row.e2e_s = min(times) if args.best else statistics.median(times)
    row.steps = num_steps(round(args.duration * frame_rate), delays)
    row.runs = [{"e2e_s": t} for t in times]
    if device == "cuda":
        row.peak_gb = torch.cuda.max_memory_allocated() / 1e9
    return row


# t5-base's settings that fast-musicgen's T5 reads beyond the sizes in config.json.
T5_BASE = {"layer_norm_epsilon": 1e-6, "feed_forward_proj": "relu", "decoder_start_token_id": 0,
           "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
           "num_decoder_layers": 12, "tie_word_embeddings": True}  # fmt: skip


def measure_fast_musicgen(name: str, args) -> Row:
    """fast-musicgen (PyPI; PyTorch with CUDA graphs, float16, batch 1): its T5, its LM and
    transformers' EnCodec, built from the same config with random weights (it loads only
    audiocraft-format files), end to end with the same options; graph capture untimed.

    Off CUDA (a check of this code, not a measurement) it runs in float32 without graphs."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = checkpoint_for(args, name)
    ids, _ = (load_tokenizer(checkpoint) if checkpoint else word_tokenizer())(prompts_for(1))
    with torch.device(device):  # fast-musicgen makes tensors on the default device
        generate, codec = build_fast_musicgen(name, device, prompt_length=len(ids[0]))
        ids = torch.tensor(np.array(ids), dtype=torch.long, device=device)  # not the CPU's
        values = config_dict(name)["decoder"]
        delays = codebook_delays(values["num_codebooks"], values.get("audio_channels", 1))

        def run(duration: float) -> float:
            frames = round(duration * 50)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            sync()
            start = time.perf_counter()
            with torch.inference_mode():
                codes = generate(ids, num_steps(frames, delays))
                audio = codec.decode(audio_codes=codes, audio_scales=[None]).audio_values
            sync()
            assert audio.shape[-1] == frames * 640, audio.shape
            return time.perf_counter() - start

        run(warmup_duration(args.duration))
        times = [run(args.duration) for _ in range(args.repeat)]
    dtype = "float16" if device == "cuda" else "float32"
    row = Row(name, "fast-musicgen", dtype, 0, 1, args.duration, 0)
    row.e2e_s = min(times) if args.best else statistics.median(times)
    row.steps = num_steps(round(args.duration * 50), delays)
    row.runs = [{"e2e_s": t} for t in times]
    if device == "cuda":
        row.peak_gb = torch.cuda.max_memory_allocated() / 1e9
    return row


def build_fast_musicgen(name: str, device: str, prompt_length: int):
    """fast-musicgen's model at the shapes of musicgen-NAME, random weights, on ``device``
    (the default torch device there): (generate(ids, steps) -> codes, transformers' EnCodec).
    On CUDA in float16 with a CUDA graph per text length up to ``prompt_length`` (its default
    is 20 tokens, fewer than the test tokenizer gives the prompt), elsewhere float32, eager."""
    from types import SimpleNamespace

    import torch
    from fast_musicgen.lm import CausalLM, LMRunner
    from fast_musicgen.text_encoder import T5
    from transformers import EncodecConfig as TorchEncodecConfig
    from transformers import EncodecModel as TorchEncodec

    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    values = config_dict(name)
    config = transformers_config(values)
    torch.manual_seed(0)
    t5 = T5(SimpleNamespace(**(T5_BASE | values["text_encoder"]))).to(device, dtype).eval()
    lm = CausalLM(config, device=device, dtype=dtype).to(device, dtype).eval()
    lm.set_cache(max_length=1500)
    runner = LMRunner.__new__(LMRunner)  # its constructor reads an audiocraft checkpoint
    runner.model, runner.cuda_graph, runner.max_length = lm, cuda, 1500
    runner.prompt_max_len = max(20, prompt_length)
    runner.graphs, runner.graph_vars = {}, {}
    if cuda:  # its warm-up synchronizes CUDA
        with torch.inference_mode():
            runner.warmup()
            runner.capture_cuda_graph()
    codec = TorchEncodec(TorchEncodecConfig(**values["audio_encoder"])).to(device).eval()
    sample = runner.generate_with_cuda_graph if cuda else runner.generate

    def generate(ids, steps: int):
        return sample(text_x=t5.encode(ids), max_steps=steps, temperature=1.0, top_k=TOP_K,
                      guidance_coef=GUIDANCE)  # fmt: skip

    return generate, codec


def load_tokenizer(path: str) -> PromptTokenizer:
    from pathlib import Path

    return PromptTokenizer.from_dir(Path(path))


def load_ours(args, name: str, dtype: str, quant: int) -> MusicGen:
    """Our model: loaded from its checkpoint as users load it (quantized while loading), or
    built in memory at the shapes of musicgen-NAME."""
    checkpoint = checkpoint_for(args, name)
    if checkpoint:
        import musicgen

        return musicgen.load(checkpoint, dtype=dtype, quantize=quant or None, progress=False)
    return build_ours(name, dtype)


def checkpoint_for(args, name: str) -> str | None:
    """The checkpoint folder of musicgen-NAME in this run, if it runs from files."""
    if args.checkpoint_root:
        return os.path.join(args.checkpoint_root, f"musicgen-{name}")
    return args.checkpoint if name == "small" else None


def write_checkpoint(path: str, name: str) -> float:
    """musicgen-NAME's shapes with random weights, written in float16 by transformers'
    save_pretrained with tokenizer files (the tests' writer: weights drawn without torch's
    init, from pools of normal draws); seconds taken, 0 where the folder exists already."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return 0.0
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.musicgen.checkpoints import write_hub_shaped

    start = time.perf_counter()
    write_hub_shaped(path, name, dtype="float16")
    return time.perf_counter() - start


def measure_transformers_apart(name: str, dtype: str, batch: int, args) -> Row:
    """``measure_transformers`` in a process of its own (CPU runs): torch's threads and MLX's
    never share this process, so neither slows the other."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "reference.json")
        command = [sys.executable, __file__, "--reference-only", "--models", name, "--dtype",
                   dtype, "--batch", str(batch), "--duration", str(args.duration), "--repeat",
                   str(args.repeat), "--json", out] + (["--best"] if args.best else [])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"the transformers process failed:\n{result.stderr[-3000:]}")
        with open(out) as f:
            values = json.load(f)["rows"][0]
    return Row(**{k: v for k, v in values.items() if k in Row.__dataclass_fields__})


def free_torch_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reference_available() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def versions() -> dict:
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": " ".join(sys.argv),
        "gemv_rows": musicgen.decoder.GEMV_ROWS,
        "kernels": musicgen.kernels.available(),
        "MLX_MAX_OPS_PER_BUFFER": os.environ.get("MLX_MAX_OPS_PER_BUFFER", "default"),
    }
    if mx.default_device() == mx.cpu:
        from rag_core.blas import blas_status

        status = blas_status()
        info["blas"] = status.summary() + (f", threads {status.threads}" if status.threads else "")
    try:
        import torch
        import transformers

        info["torch"] = torch.__version__
        info["transformers"] = transformers.__version__
        with contextlib.suppress(ImportError):
            from importlib.metadata import version

            info["fast_musicgen"] = version("fast-musicgen")
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def table(rows: list[Row]) -> str:
    head = (
        "| model | impl | dtype | quant | batch | text ms | ms/step | EnCodec s | end-to-end s "
        "| RTF | audio s/s | weights GB | peak GB | finite | transformers / ours |"
    )
    lines = [head, "|" + "---|" * 15]
    reference = {(r.model, r.dtype, r.batch): r for r in rows if r.impl == "transformers"}
    for r in rows:
        ref = reference.get((r.model, r.dtype, r.batch))
        ratio = f"{ref.e2e_s / r.e2e_s:.2f}x" if ref and r.impl != "transformers" else ""
        if r.impl == "fast-musicgen":
            ratio = f"({ratio} vs transformers)" if ratio else ""
        finite = "" if r.finite is None else ("yes" if r.finite else "NO")
        lines.append(
            f"| {r.model} | {r.impl} | {r.dtype} | {r.quantize or '-'} | {r.batch} "
            f"| {fmt(r.text_s * 1000)} | {fmt(r.step_ms)} | {fmt(r.codec_s, 2)} "
            f"| {fmt(r.e2e_s, 2)} | {fmt(r.rtf, 3)} | {fmt(r.audio_per_s, 2)} "
            f"| {fmt(r.weights_gb, 2)} | {fmt(r.peak_gb, 2)} | {finite} | {ratio} |"
        )
    return "\n".join(lines)


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["small"], choices=["small", "medium", "large"]
    )
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio per prompt")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--dtype", nargs="+", default=["float32"],
                        choices=["float32", "float16", "bfloat16"])  # fmt: skip
    parser.add_argument(
        "--quantize",
        type=int,
        nargs="+",
        default=[0],
        choices=[0, 4, 8],
        help="decoder bits (0 = unquantized); quantized rows follow in-place",
    )
    parser.add_argument("--plain", action="store_true", help="also time compile=False")
    parser.add_argument("--unfused", action="store_true",
                        help="also time the compiled path without musicgen.kernels")  # fmt: skip
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip transformers")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per row (median)")
    parser.add_argument("--best", action="store_true", help="report the fastest run, not median")
    parser.add_argument("--json", help="write rows, versions and quality to this file")
    parser.add_argument("--gemv-rows", type=int, help="musicgen.decoder.GEMV_ROWS (tuning)")
    parser.add_argument(
        "--checkpoint",
        help="a musicgen-small checkpoint folder (save_pretrained"
        "): ours loads it with musicgen.load, transformers with from_pretrained",
    )
    parser.add_argument(
        "--checkpoint-root",
        help="folder of checkpoints musicgen-NAME for each of --models (written in float16 by "
        "save_pretrained where absent); ours, transformers and fast-musicgen's tokenizer use them",
    )
    parser.add_argument(
        "--per-row-keys",
        action="store_true",
        help="one random key per prompt, as `music batch` samples",
    )
    parser.add_argument(
        "--fast-musicgen",
        action="store_true",
        help="also time fast-musicgen (CUDA, float16, batch 1)",
    )
    parser.add_argument(
        "--reference-max-batch", type=int, default=16, help="largest batch timed with transformers"
    )
    parser.add_argument("--reference-only", action="store_true",
                        help="only the transformers rows (what a CPU run starts for them)")
    args = parser.parse_args(argv)
    if args.checkpoint and args.checkpoint_root:
        parser.error("--checkpoint and --checkpoint-root exclude each other")
    if args.checkpoint and args.models != ["small"]:
        parser.error("--checkpoint is musicgen-small's; use --checkpoint-root for other models")
    if args.gemv_rows is not None:
        musicgen.decoder.GEMV_ROWS = args.gemv_rows
    if args.reference and not reference_available():
        print("torch/transformers not importable: no reference rows", file=sys.stderr)
        args.reference = False

    info = versions()
    if args.checkpoint_root:
        info["checkpoint_write_s"] = {}
        for name in args.models:
            seconds = write_checkpoint(checkpoint_for(args, name), name)
            info["checkpoint_write_s"][name] = round(seconds, 1)
            how = f"written in {seconds:.1f} s" if seconds else "already there"
            print(f"checkpoint musicgen-{name}: {checkpoint_for(args, name)} ({how})", flush=True)
    print(json.dumps(info), flush=True)
    rows: list[Row] = []
    quality, parity = [], []
    for name in args.models:
        for dtype in args.dtype:
            for quant in [] if args.reference_only else sorted(args.quantize):
                model = load_ours(args, name, dtype, quant)
                if quant and not args.checkpoint:
                    quality.append(
                        {"model": name, "dtype": dtype}
                        | quantization_quality(model, quant, args.duration)
                    )
                    print(json.dumps(quality[-1]), flush=True)
                if args.plain and not quant and dtype == "float32":
                    parity.append(
                        {"model": name} | greedy_parity(model, args.batch[0], args.duration)
                    )
                    print(json.dumps(parity[-1]), flush=True)
                for batch in args.batch:
                    rows.append(measure_ours(model, name, dtype, quant, batch, args))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    if args.unfused and musicgen.kernels.available():
                        unfused = measure_ours(model, name, dtype, quant, batch, args, fused=False)
                        rows.append(unfused)
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                    if args.plain and not quant:
                        rows.append(measure_ours(model, name, dtype, 0, batch, args, False))
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                del model
                gc.collect()
                mx.clear_cache()
            # On CUDA in float16; off CUDA a float32 check of the code path (no CUDA graphs).
            half = dtype == "float16" or mx.default_device() == mx.cpu
            if args.fast_musicgen and half and 1 in args.batch:
                rows.append(measure_fast_musicgen(name, args))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                free_torch_cache()
            if args.reference:
                apart = mx.default_device() == mx.cpu and not args.reference_only
                for batch in [b for b in args.batch if b <= args.reference_max_batch]:
                    measure = measure_transformers_apart if apart else measure_transformers
                    rows.append(measure(name, dtype, batch, args))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    gc.collect()
                    free_torch_cache()
    print()
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    print(table(rows))
    for q in quality:
        print(
            f"quantize={q['bits']} ({q['model']}, {q['dtype']}): logits rel. error "
            f"{q['logits_rel_error']:.4f}, argmax agreement {q['argmax_agreement']:.3f}, greedy "
            f"codes equal {q['greedy_code_agreement']:.3f} (first difference at frame "
            f"{q['greedy_frames_before_first_difference']} of {q['frames']})"
        )
    for p in parity:
        print(
            f"greedy float32 ({p['model']}, batch {p['batch']}, {p['frames']} frames): compiled "
            f"== plain for {p['equal']:.1%} of codes, first difference at frame "
            f"{p['first_difference']} ({p['distinct_codes']} distinct codes)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "versions": info,
                    "rows": [asdict(r) for r in rows],
                    "quality": quality,
                    "parity": parity,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
