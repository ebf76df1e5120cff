"""Random MusicGen checkpoints written by transformers, in the layout of the hub repos.

Shared by the musicgen, plugin, performance and feature tests:

    from tests.musicgen.checkpoints import write_tiny_musicgen, reference_model
    path = write_tiny_musicgen(tmp_path / "tiny")          # loads with musicgen.load(path)
    torch_model = reference_model(path)                    # the same weights in transformers

Test-only: torch and transformers are the reference implementation, never a runtime need.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import mlx.core as mx
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    MusicgenConfig,
    MusicgenForConditionalGeneration,
    T5TokenizerFast,
)
from transformers.initialization import no_init_weights

# Frame rate 50 Hz (as the real 32 kHz codec), 4 codebooks of 32 codes at 1 kbps.
TINY_ENCODEC = {
    "model_type": "encodec",
    "sampling_rate": 800,
    "upsampling_ratios": [4, 4],
    "target_bandwidths": [1.0],
    "codebook_size": 32,
    "codebook_dim": 8,
    "hidden_size": 8,
    "num_filters": 4,
    "num_lstm_layers": 1,
    "norm_type": "weight_norm",
    "normalize": False,
    "use_causal_conv": False,
    "use_conv_shortcut": False,
    "chunk_length_s": None,
    "overlap": None,
}
TINY_T5 = {
    "model_type": "t5",
    "vocab_size": 64,
    "d_model": 16,
    "d_kv": 4,
    "d_ff": 32,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "feed_forward_proj": "relu",
}
TINY_DECODER = {
    "model_type": "musicgen_decoder",
    "vocab_size": 32,
    "hidden_size": 24,
    "ffn_dim": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_codebooks": 4,
    "max_position_embeddings": 256,
    "pad_token_id": 32,
    "bos_token_id": 32,
}

# facebook/musicgen-small's config.json: t5-base, a 24-layer d=1024 decoder, encodec_32khz.
SMALL_ENCODEC = {
    "model_type": "encodec",
    "sampling_rate": 32000,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
    "codebook_dim": 128,
    "hidden_size": 128,
    "num_filters": 64,
    "num_lstm_layers": 2,
    "norm_type": "weight_norm",
    "normalize": False,
    "use_causal_conv": False,
    "use_conv_shortcut": False,
    "chunk_length_s": None,
    "overlap": None,
}
SMALL_T5 = {
    "model_type": "t5",
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "relu",
}
SMALL_DECODER = {
    "model_type": "musicgen_decoder",
    "vocab_size": 2048,
    "hidden_size": 1024,
    "ffn_dim": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_codebooks": 4,
    "max_position_embeddings": 2048,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
}

AUDIO_ATOL = 1e-4  # float32, absolute, on audio in [-1, 1]
WORDS = ["lofi", "piano", "rain", "epic", "brass", "drums", "calm", "music", "a", "the", "with"]
PROMPTS = ["lofi piano, rain", "epic brass with drums", "calm"]


def musicgen_config(
    text_encoder: dict, audio_encoder: dict, decoder: dict, audio_channels: int = 1
) -> MusicgenConfig:
    """A transformers MusicgenConfig; stereo doubles the decoder's codebooks."""
    decoder = dict(decoder, audio_channels=audio_channels)
    decoder["num_codebooks"] *= audio_channels
    return MusicgenConfig(text_encoder=text_encoder, audio_encoder=audio_encoder, decoder=decoder)


def write_musicgen(
    path: str | Path,
    config: MusicgenConfig,
    *,
    seed: int = 0,
    weight_norm: Literal["parametrizations", "legacy"] = "parametrizations",
    dtype: Literal["float32", "float16"] = "float32",
    shards: int = 1,
    scale: Literal["spread", "small"] = "spread",
) -> Path:
    """Write a random MusicGen checkpoint as the hub repos lay it out; return ``path``.

    config.json + generation_config.json + model.safetensors (or ``shards`` > 1 shards with
    model.safetensors.index.json) saved by transformers' save_pretrained, plus tokenizer.json and
    tokenizer_config.json. ``weight_norm="legacy"`` renames weight norm to weight_g/weight_v as in
    the hub files; ``dtype="float16"`` stores every tensor in half precision. ``scale="spread"``
    draws weights at scales where every part matters to the output; ``"small"`` uses
    transformers' std 0.02, for the real sizes (see SCALES).
    """
    path = Path(path)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    torch.manual_seed(seed)
    with no_init_weights():  # every weight is drawn below, much faster
        model = MusicgenForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    model.eval().tie_weights()  # T5's shared and encoder.embed_tokens, as the hub stores them
    _randomize(model, scale, seed)
    model.save_pretrained(path, max_shard_size="100GB")
    if weight_norm == "legacy":
        _rename_weight_norm(path)
    elif weight_norm != "parametrizations":
        raise ValueError(f"weight_norm must be 'parametrizations' or 'legacy', got {weight_norm!r}")
    if shards > 1:
        _reshard(path, shards)
    write_tokenizer(path)
    return path


def write_hub_shaped(
    path: str | Path, name: str = "small", dtype: Literal["float32", "float16"] = "float32"
) -> Path:
    """facebook/musicgen-NAME's config.json with random weights (transformers' scale), written
    by ``write_musicgen`` as the hub repo lays it out (the benchmarks' checkpoints); a folder
    that holds a config.json already is left as it is. Returns ``path``."""
    import copy

    from musicgen.plugin import HUB_MODELS, hub_config

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    hidden, layers, heads, _ = HUB_MODELS[f"facebook/musicgen-{name}"]
    values = copy.deepcopy(hub_config(hidden, layers, heads))  # transformers edits it
    config = MusicgenConfig(text_encoder=values["text_encoder"], decoder=values["decoder"],
                            audio_encoder=values["audio_encoder"])  # fmt: skip
    return write_musicgen(path, config, dtype=dtype, scale="small")


def write_tiny_musicgen(
    path: str | Path,
    *,
    seed: int = 0,
    weight_norm: Literal["parametrizations", "legacy"] = "parametrizations",
    dtype: Literal["float32", "float16"] = "float32",
    shards: int = 1,
    audio_channels: int = 1,
) -> Path:
    """A tiny random MusicGen (T5 d=16, decoder d=24, 4 codebooks of 32 codes per channel,
    800 Hz EnCodec at 50 frames/s) in the real repo layout; generating 1 s takes well under 1 s."""
    config = musicgen_config(TINY_T5, TINY_ENCODEC, TINY_DECODER, audio_channels)
    return write_musicgen(
        path, config, seed=seed, weight_norm=weight_norm, dtype=dtype, shards=shards
    )


def write_tokenizer(path: str | Path) -> Path:
    """tokenizer.json + tokenizer_config.json of a small T5-style unigram tokenizer."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{word}", -1.0) for word in WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz,.!-'0123456789"]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    # t5-base's pipeline without its sentencepiece charsmap normalizer, which transformers 5
    # keeps only when it comes from a spiece.model.
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
    T5TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
    ).save_pretrained(path)
    return Path(path)


def reference_model(path: str | Path) -> MusicgenForConditionalGeneration:
    """The checkpoint in transformers, float32, eager attention, eval mode."""
    model = MusicgenForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def reference_inputs(path: str | Path, prompts: list[str]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask as transformers' processor pads a batch of prompts."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    return dict(tokenizer(prompts, padding=True, return_tensors="pt"))


SCALES = {
    # Weights at scales where every part of the model matters to its output (tiny models).
    "spread": {"embedding": 1.0, "relative": 1.0, "linear": None, "norm": 0.5, "bias": 0.2},
    # transformers' init scales (std 0.02): small activations, so float32 rounding stays far
    # below 1e-4 even through 24 layers of the real sizes.
    "small": {"embedding": 1.0, "relative": 0.04, "linear": 0.02, "norm": 0.1, "bias": 0.02},
}


def _randomize(model: MusicgenForConditionalGeneration, scale: str, seed: int) -> None:
    """Fill every weight, fast: slices of pools of normal draws, at random offsets.

    transformers' own init would leave EnCodec's codebooks at zero (constant audio) and its
    weight-norm gains at |v|; drawing 600M values one by one takes a minute on 2 cores.
    """
    scales = SCALES[scale]
    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    length = max(p.numel() for p in model.parameters()) + (1 << 20)
    pools: dict[float, torch.Tensor] = {}

    def fill(param: torch.Tensor, std: float) -> None:
        if std not in pools:
            pools[std] = (torch.randn(length, generator=generator) * std).to(dtype)
        n = param.numel()
        offset = int(torch.randint(0, length - n + 1, (1,), generator=generator))
        param.copy_(pools[std][offset : offset + n].view(param.shape))

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("audio_encoder."):
                fill(param, 1.0)
                param.mul_(0.1 if name.endswith("bias") else param[0].numel() ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(
                    1 + scales["norm"] * (2 * torch.rand(param.shape, generator=generator) - 1)
                )
            elif name.endswith("bias"):
                fill(param, scales["bias"])
            elif "relative_attention_bias" in name:
                fill(param, scales["relative"])
            elif "embed" in name or "shared" in name:
                fill(param, scales["embedding"])
            elif scales["linear"]:
                fill(param, scales["linear"])
            else:
                fill(param, 1.0)
                param.mul_(param.shape[1] ** -0.5)
        codec = model.audio_encoder.float()
        for module in codec.modules():
            weight_norm = getattr(module, "parametrizations", None)
            if weight_norm is not None:  # gain g = |v| x U(0.5, 1.5), not just |v|
                g, v = weight_norm.weight.original0, weight_norm.weight.original1
                norm = v.flatten(1).norm(dim=1).view(g.shape)
                g.copy_(norm * (0.5 + torch.rand(g.shape, generator=generator)))
        # Codebooks at the scale of the encoder output, so codes spread over the entries.
        audio = torch.randn(2, codec.config.audio_channels, 8 * codec.config.hop_length)
        spread = codec.encoder(audio).std().item()
        for layer in codec.quantizer.layers:
            embed = layer.codebook.embed
            embed.copy_(torch.randn(embed.shape, generator=generator) * spread)
        codec.to(dtype)


def _reshard(path: Path, shards: int) -> None:
    """Split model.safetensors into exactly ``shards`` files and an index, named as on the hub."""
    tensors = load_file(path / "model.safetensors")
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    groups: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    written = 0
    for key, tensor in tensors.items():
        groups[min(shards - 1, written * shards // total)][key] = tensor
        written += tensor.numel() * tensor.element_size()
    assert all(groups), "too few tensors for that many shards"
    weight_map = {}
    for i, group in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file(group, path / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (path / "model.safetensors").unlink()


def _rename_weight_norm(path: Path) -> None:
    """Store weight norm as weight_g/weight_v, as the facebook/musicgen-* files do."""

    def rename(key: str) -> str:
        return key.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"
        )

    for file in path.glob("model*.safetensors"):
        tensors = {rename(k): v for k, v in load_file(file).items()}
        save_file(tensors, file, metadata={"format": "pt"})
    index = path / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {rename(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))


def reference_generate(
    model: MusicgenForConditionalGeneration, inputs: dict[str, torch.Tensor], **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' generate: (codes (B, K, T) with the delay undone, audio (B, C, samples))."""
    captured = []
    decode = model.audio_encoder.decode

    def spy(audio_codes, *args, **kw):
        captured.append(audio_codes[0])
        return decode(audio_codes, *args, **kw)

    model.audio_encoder.decode = spy
    try:
        with torch.no_grad():
            audio = model.generate(**inputs, **kwargs)
    finally:
        del model.audio_encoder.decode
    if len(captured) == 2:  # stereo: left (even) and right (odd) codebooks decoded apart
        left, right = captured
        B, K, T = left.shape
        return torch.stack([left, right], dim=2).reshape(B, 2 * K, T), audio
    return captured[0], audio


def assert_generation_matches_reference(
    model, reference, path, prompts, guidance_scale=3.0, duration=0.3, atol=AUDIO_ATOL
):
    """Greedy codes identical to transformers' and audio within ``atol``; returns the codes."""
    frames = round(duration * model.frame_rate)
    delay = model.num_codebooks // model.audio_channels - 1
    # Below this transformers skips the delay pattern altogether (max_length < 2K - 1).
    assert frames >= delay, "too short for transformers to apply its delay pattern"
    codes = model.generate_tokens(
        prompts, duration=duration, guidance_scale=guidance_scale, temperature=0
    )
    expected_codes, expected_audio = reference_generate(
        reference,
        reference_inputs(path, prompts),
        do_sample=False,
        guidance_scale=guidance_scale,
        max_new_tokens=frames + delay,
    )
    assert codes.dtype == mx.int32
    assert codes.shape == (len(prompts), model.num_codebooks, frames)
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    audio = model.decode(codes)
    assert audio.dtype == mx.float32
    assert audio.shape == (len(prompts), model.audio_channels, frames * model.codec.hop_length)
    np.testing.assert_allclose(np.array(audio), expected_audio.numpy(), rtol=0, atol=atol)
    return codes
