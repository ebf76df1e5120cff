"""The mlx-rag plugin (entry point ``musicgen``): MusicGen models, the `music` tool, the
`mlx-rag music` commands and the server's music endpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rag_core import ModelPattern, ModelSpec, Tool, hookimpl
from rag_core.hub import looks_like_repo_id

from musicgen.plugin.smoke import SMOKE_ID

T5_BASE = {"model_type": "t5", "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072,
           "num_layers": 12, "num_heads": 12}  # fmt: skip
ENCODEC_32KHZ = {
    "model_type": "encodec", "sampling_rate": 32000, "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2], "codebook_size": 2048, "codebook_dim": 128, "hidden_size": 128,
    "num_filters": 64, "num_lstm_layers": 2, "use_causal_conv": False, "use_conv_shortcut": False,
}  # fmt: skip
# The hub repos' decoders (all use t5-base and encodec_32khz): (hidden, layers, heads).
HUB_MODELS = {
    "facebook/musicgen-small": (1024, 24, 16, "300M-parameter decoder; the default"),
    "facebook/musicgen-medium": (1536, 48, 24, "1.5B-parameter decoder"),
    "facebook/musicgen-large": (2048, 48, 32, "3.3B-parameter decoder"),
}


def hub_config(hidden: int, layers: int, heads: int) -> dict:
    """config.json content of a facebook/musicgen-* repo with this decoder."""
    decoder = {"model_type": "musicgen_decoder", "vocab_size": 2048, "hidden_size": hidden,
               "ffn_dim": 4 * hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
               "num_codebooks": 4, "pad_token_id": 2048, "bos_token_id": 2048}  # fmt: skip
    return {"model_type": "musicgen", "text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ,
            "decoder": decoder}  # fmt: skip


def float32_bytes(config: dict) -> int:
    """Memory of a loaded checkpoint in float32 (the default dtype), from its exact layout."""
    from musicgen.plugin.layout import parameter_count

    return 4 * parameter_count(config)


def load_model(source: str):
    """The registry's loader: a local directory or a hub repo id -> a MusicGen."""
    from musicgen.loading import load

    return load(source)


def load_smoke(source: str):
    from musicgen.plugin.smoke import load_smoke

    return load_smoke(source)


def is_musicgen_dir(source: str) -> bool:
    """A local directory whose config.json says model_type musicgen or musicgen_melody."""
    path = Path(source).expanduser()
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") in ("musicgen", "musicgen_melody")


def is_musicgen_repo(source: str) -> bool:
    """A hub repo id such as facebook/musicgen-stereo-small or facebook/musicgen-melody."""
    if not looks_like_repo_id(source):
        return False
    return "musicgen" in source.split("/")[1].lower()


QUANTIZED = re.compile(r"(?P<base>.+)@q(?P<bits>4|8)")  # "musicgen-small@q4"


def quantized_id(model_id: str, bits: int) -> str:
    """The registry id of ``model_id`` with a ``bits``-bit decoder: its canonical id (aliases
    and folders resolved, so they share one cached model) plus "@q4" or "@q8"."""
    from rag_core import get_registry

    return f"{get_registry().spec(model_id).id}@q{bits}"


def split_quantized(source: str) -> tuple[str, int] | None:
    """"musicgen-small@q4" -> ("musicgen-small", 4); None for any other source."""
    match = QUANTIZED.fullmatch(source)
    return None if match is None else (match["base"], int(match["bits"]))


def is_quantized_music(source: str) -> bool:
    """``<music model id, alias or folder>@q4`` or ``@q8``."""
    from rag_core import RagError, get_registry

    parts = split_quantized(source)
    if parts is None or split_quantized(parts[0]) is not None:
        return False
    try:
        return get_registry().spec(parts[0]).kind == "music"
    except RagError:
        return False


def load_quantized(source: str):
    """The registry's loader for "<base>@q4|8": the base model with a quantized decoder."""
    from rag_core import get_registry

    from musicgen.loading import load

    base, bits = split_quantized(source)
    spec = get_registry().spec(base)
    if spec.prepare is not None:  # the smoke checkpoint builds its files first
        spec.prepare()
    return load(spec.location, quantize=bits)


def weights_spec(spec: ModelSpec) -> ModelSpec:
    """The registry spec whose files a model loads: the base model's for "<base>@q4|8" (so
    a quantized smoke checkpoint is still known as one), else ``spec`` itself."""
    from rag_core import get_registry

    parts = split_quantized(spec.id)
    if parts is None or spec.loader is not load_quantized:
        return spec
    return get_registry().spec(parts[0])


@hookimpl
def register_models(register):
    """facebook/musicgen-small/-medium/-large, the smoke checkpoint, and MusicGen folders."""
    from musicgen.loading import ALLOW_PATTERNS
    from musicgen.plugin.smoke import ensure_smoke_checkpoint, smoke_dir, smoke_size_bytes

    for model_id, (hidden, layers, heads, about) in HUB_MODELS.items():
        register(ModelSpec(
            id=model_id, kind="music", loader=load_model, aliases=(model_id.split("/")[1],),
            size_bytes=float32_bytes(hub_config(hidden, layers, heads)),
            description=f"MusicGen text-to-music, 32 kHz mono ({about})",
            allow_patterns=tuple(ALLOW_PATTERNS),
        ))  # fmt: skip
    register(ModelSpec(
        id=SMOKE_ID, kind="music", loader=load_smoke, source=str(smoke_dir()),
        size_bytes=smoke_size_bytes(), prepare=ensure_smoke_checkpoint,
        description="UNTRAINED smoke checkpoint built locally (random weights: noise, not "
        "music), for checking the pipeline without a download",
    ))  # fmt: skip
    register(ModelPattern(
        name="musicgen-dir", kind="music", matches=is_musicgen_dir, loader=load_model,
        description="a local transformers-format MusicGen folder (config.json model_type "
        "musicgen)",
    ))  # fmt: skip
    register(ModelPattern(
        name="musicgen-hub", kind="music", matches=is_musicgen_repo, loader=load_model,
        description="a MusicGen repo on the Hugging Face Hub (OWNER/...musicgen...)",
    ))  # fmt: skip
    register(ModelPattern(
        name="musicgen-quantized", kind="music", matches=is_quantized_music,
        loader=load_quantized, description="a music model id, alias or folder with a 4- or "
        "8-bit decoder: ID@q4 or ID@q8 (cached apart from the full-precision model)",
    ))  # fmt: skip


@hookimpl
def register_tools(register):
    """The `music` pipeline step."""
    from musicgen.plugin.tool import run

    register(Tool("music", run, "turn the answer, the retrieved passages or the question into "
                  "music with MusicGen (audio file + JSON sidecar)"))  # fmt: skip


@hookimpl
def register_commands(cli):
    """`mlx-rag music generate | from-text | demo | batch | tracks`."""
    from musicgen.plugin.batch.command import batch_command
    from musicgen.plugin.cli import music_group
    from musicgen.plugin.tracks_command import tracks_command

    music_group.add_command(batch_command)
    music_group.add_command(tracks_command)
    cli.add_command(music_group)


@hookimpl
def register_routes(register):
    """`mlx-rag serve`: POST /api/music, the track library (/api/tracks) and the page's music
    part (musicgen.plugin.routes)."""
    from musicgen.plugin.routes import routes

    for route in routes():
        register(route)
