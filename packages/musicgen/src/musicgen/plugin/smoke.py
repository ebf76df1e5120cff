"""An untrained "smoke" MusicGen checkpoint, built locally without torch or a download.

It has random weights in the exact layout of the facebook/musicgen-* repos (config.json,
model.safetensors with weight_g/weight_v, a T5-style tokenizer.json), so it loads through
``musicgen.load`` like a real one, and it is small, so it generates seconds of 32 kHz audio in
about a second on a CPU. What it generates is noise, not music: it exists so that the pipeline
can run end to end when no real model can be reached, and it is labelled as untrained wherever
it is used (config.json carries a marker that ``is_smoke_checkpoint`` reads).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

SMOKE_ID = "musicgen-smoke"
MARKER = "mlx_rag_smoke"  # the config.json key that labels a smoke checkpoint
VERSION = 1  # bump when the files change; older smoke dirs are rebuilt
NOTICE = (
    "UNTRAINED smoke checkpoint (random weights): it produces noise, not music. It only shows "
    "that the pipeline runs end to end."
)

TEXT_ENCODER = {
    "model_type": "t5",
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "relu",
    "layer_norm_epsilon": 1e-6,
}
DECODER = {  # musicgen-small's vocabulary and codebooks, a much smaller transformer
    "model_type": "musicgen_decoder",
    "vocab_size": 2048,
    "hidden_size": 64,
    "ffn_dim": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_codebooks": 4,
    "audio_channels": 1,
    "max_position_embeddings": 2048,
    "activation_function": "gelu",
    "scale_embedding": False,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
}
AUDIO_ENCODER = {  # encodec_32khz's rates and codebooks (32 kHz, 50 frames/s), fewer filters
    "model_type": "encodec",
    "sampling_rate": 32000,
    "audio_channels": 1,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
    "codebook_dim": 16,
    "hidden_size": 16,
    "num_filters": 4,
    "num_lstm_layers": 1,
    "num_residual_layers": 1,
    "norm_type": "weight_norm",
    "normalize": False,
    "use_causal_conv": False,
    "use_conv_shortcut": False,
    "chunk_length_s": None,
    "overlap": None,
}
WORDS = """a an and the of with in on at for to by from slow fast soft loud calm dark bright
happy sad epic dreamy gentle warm cold ambient piano guitar strings violin cello drums bass
synth flute brass choir organ harp bells pads beat rhythm melody chords tempo bpm music song
track jazz rock pop folk blues classical electronic lofi orchestral cinematic acoustic night
sea rain wind storm forest city desert mountain waves""".split()  # noqa: SIM905
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.;:!?-'\"()/&%+"


def smoke_config(vocab: int) -> dict:
    """The smoke checkpoint's config.json content."""
    return {
        "architectures": ["MusicgenForConditionalGeneration"],
        "model_type": "musicgen",
        "is_encoder_decoder": True,
        "text_encoder": dict(TEXT_ENCODER, vocab_size=vocab),
        "audio_encoder": dict(AUDIO_ENCODER),
        "decoder": dict(DECODER),
        MARKER: {"version": VERSION, "untrained": True, "notice": NOTICE},
    }


def vocab_size() -> int:
    """The smoke tokenizer's vocabulary: 3 special tokens, the word boundary, words, characters."""
    return 4 + len(dict.fromkeys(WORDS)) + len(CHARS)


def smoke_size_bytes() -> int:
    """Memory of the loaded smoke checkpoint (float32), from its exact layout."""
    from musicgen.plugin.layout import parameter_count

    return 4 * parameter_count(smoke_config(vocab_size()))


def write_smoke_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the smoke checkpoint into directory ``path`` (created) and return it.

    The same seed writes byte-identical weights.
    """
    import mlx.core as mx

    from musicgen.plugin.layout import checkpoint_shapes

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = smoke_config(_write_tokenizer(path))
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"do_sample": True, "guidance_scale": 3.0, "max_length": 1500, "top_k": 250,
                  "bos_token_id": DECODER["bos_token_id"], "pad_token_id": DECODER["pad_token_id"],
                  "decoder_start_token_id": DECODER["bos_token_id"]}  # fmt: skip
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    key = mx.random.key(seed)
    weights = {}
    shapes = checkpoint_shapes(config)
    for name in sorted(shapes):
        key, sub = mx.random.split(key)
        weights[name] = _init(name, shapes[name], sub)
    for name in [n for n in weights if n.endswith(".weight_v")]:
        v = weights[name]  # weight_g = |v| per output channel: the norm changes nothing
        weights[name.replace(".weight_v", ".weight_g")] = mx.sqrt(
            mx.sum(v * v, axis=(1, 2), keepdims=True)
        )
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "pt"})
    (path / "README.md").write_text(
        f"# {SMOKE_ID}\n\n{NOTICE}\n\nBuilt by `musicgen.plugin.smoke.write_smoke_checkpoint` "
        f"(seed {seed}); `mlx-rag music demo` uses it only when the real model cannot be "
        "reached.\n"
    )
    return path


def _init(name: str, shape: tuple[int, ...], key):
    """Random weights at scales that keep activations (and the audio) finite and non-silent."""
    import mlx.core as mx

    leaf = name.rsplit(".", 1)[-1]
    if "norm" in name.rsplit(".", 2)[-2] or name.endswith("layer_norm.weight"):
        return mx.ones(shape) if leaf == "weight" else mx.zeros(shape)
    if leaf in ("bias", "cluster_size") or leaf.startswith("bias_"):
        return mx.zeros(shape)
    if leaf == "inited":
        return mx.ones(shape)
    if leaf in ("embed", "embed_avg") or "embed_tokens" in name or name.endswith("shared.weight"):
        return mx.random.normal(shape, key=key)
    fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1)
    return mx.random.normal(shape, key=key) * fan_in**-0.5


def _write_tokenizer(path: Path) -> int:
    """tokenizer.json (a T5-style unigram model) + its configs; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [(f"▁{word}", -2.0) for word in dict.fromkeys(WORDS)]
    vocab += [(char, -6.0) for char in CHARS]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    for token in ("<pad>", "</s>", "<unk>"):
        tokenizer.add_special_tokens([token])
    tokenizer.save(str(path / "tokenizer.json"))
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 512,
              **special}  # fmt: skip
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return tokenizer.get_vocab_size(with_added_tokens=True)


def is_smoke_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a smoke checkpoint (its config.json says so)."""
    try:
        config = json.loads((Path(path).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get(MARKER), dict)


def smoke_dir() -> Path:
    """Where the smoke checkpoint lives: ``models/musicgen-smoke`` in the mlx-rag data dir."""
    from rag_core import home_dir

    return home_dir() / "models" / SMOKE_ID


def ensure_smoke_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """The smoke checkpoint at ``path`` (default ``smoke_dir()``), built there if missing.

    It is written to a temporary directory beside ``path`` and renamed into place, so a
    concurrent or interrupted build never leaves a half-written checkpoint behind.
    """
    path = Path(path).expanduser() if path else smoke_dir()
    if _current(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        write_smoke_checkpoint(tmp)
        if path.exists():
            if _current(path):  # another process finished first
                return path
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _current(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text())
        marker = config[MARKER]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("version") == VERSION and (path / "model.safetensors").is_file()


def load_smoke(source: str | os.PathLike | None = None):
    """Load the smoke checkpoint (building it first if needed): the registry's loader."""
    from musicgen.loading import load

    return load(ensure_smoke_checkpoint(source), progress=False)
