"""The mlx-rag plugin (entry point ``musicgen``): MusicGen models, the `music` tool, the
`mlx-rag music` commands and the server's music endpoints. This module only registers them;
each lives in a module of its own (models.py, tool.py, cli.py, batch/, routes.py, tracks.py),
which never imports this one."""

from __future__ import annotations

from rag_core import ModelPattern, ModelSpec, Tool, hookimpl

from musicgen.plugin.models import (
    HUB_MODELS,
    float32_bytes,
    hub_config,
    is_music_variant,
    is_musicgen_dir,
    is_musicgen_repo,
    load_model,
    load_variant,
)
from musicgen.plugin.smoke import SMOKE_ID

__all__ = ["HUB_MODELS", "hub_config"]  # the hub repos' shapes (benchmarks, tests)


@hookimpl
def register_models(register):
    """facebook/musicgen-small/-medium/-large, the smoke checkpoint, MusicGen folders and hub
    repos, and their variants (ID@q4, ID@float16, ...)."""
    from musicgen.loading import ALLOW_PATTERNS
    from musicgen.plugin.smoke import (
        ensure_smoke_checkpoint,
        load_smoke,
        smoke_dir,
        smoke_size_bytes,
    )

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
        name="musicgen-variant", kind="music", matches=is_music_variant, loader=load_variant,
        description="a music model id, alias or folder with a 4- or 8-bit decoder or another "
        "compute dtype: ID@q4, ID@q8, ID@float16, ID@bfloat16, ID@q4-float16, ... (each cached "
        "apart from the float32 model)",
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
