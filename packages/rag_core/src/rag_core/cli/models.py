"""`mlx-rag models list|pull|rm`: the shared registry and the local model cache."""

from __future__ import annotations

from pathlib import Path

import click

from rag_core.cli.output import echo_json, echo_table
from rag_core.errors import ModelNotFoundError, ModelUnavailableError
from rag_core.hub import (
    DEFAULT_PULL_PATTERNS,
    cached_repos,
    looks_like_repo_id,
    remove_cached,
    resolve_model_path,
)
from rag_core.plugins import env_flag, get_host, get_registry
from rag_core.registry import ModelSpec, format_bytes


@click.group("models")
def models_group() -> None:
    """Models in the shared registry and in the local download cache."""


@models_group.command("list")
@click.option("--kind", help="Only models of this kind (music, llm, embedding, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(kind: str | None, as_json: bool) -> None:
    """Registered and loaded models, with estimated sizes and what is downloaded."""
    registry = get_registry()
    cached = cached_repos()
    loaded = {spec.id: size for spec, size in registry.loaded()}
    specs = registry.specs(kind)
    specs += [s for s, _ in registry.loaded() if s not in specs and kind in (None, s.kind)]
    patterns = registry.patterns(kind)

    def on_disk(spec: ModelSpec) -> int | str | None:
        if Path(spec.location).expanduser().is_dir():
            return "local"
        repo = cached.get(spec.location)
        return repo.size_bytes if repo else None

    if as_json:
        echo_json({
            "models": [{
                "id": s.id, "kind": s.kind, "plugin": s.plugin, "aliases": list(s.aliases),
                "source": s.location, "size_bytes": s.size_bytes, "description": s.description,
                "loaded": s.id in loaded, "loaded_bytes": loaded.get(s.id),
                "on_disk": on_disk(s),
            } for s in specs],
            "patterns": [{"name": p.name, "kind": p.kind, "plugin": p.plugin,
                          "description": p.description} for p in patterns],
        })
        return
    if not specs and not patterns:
        hint = get_host().missing_hint()
        what = f"of kind '{kind}' " if kind else ""
        click.echo(f"No models {what}are registered. Plugins register models; see "
                   f"`mlx-rag plugins list`. {hint}".rstrip())
        return
    if specs:
        rows = []
        for s in specs:
            disk = on_disk(s)
            rows.append([
                s.id, s.kind, format_bytes(s.size_bytes),
                format_bytes(loaded[s.id]) if s.id in loaded else "-",
                disk if isinstance(disk, str) else format_bytes(disk) if disk else "-",
                s.plugin, ", ".join(s.aliases) or "-",
            ])
        echo_table(["id", "kind", "size", "loaded", "on disk", "plugin", "aliases"], rows)
    if patterns:
        click.echo("\nPatterns (any matching source can be loaded by id or path):")
        for p in patterns:
            click.echo(f"  {p.name} ({p.kind}, plugin {p.plugin}): {p.description or '-'}")


def _spec(model_id: str) -> ModelSpec:
    """The spec `pull`/`rm` act on: a registered model's, or one for a plain hub repo id."""
    try:
        return get_registry().spec(model_id)
    except ModelNotFoundError:
        if not looks_like_repo_id(model_id):
            raise
        click.echo(f"Note: '{model_id}' is not a registered model; using it as a hub repo id.",
                   err=True)
        return ModelSpec(id=model_id, kind="?", loader=lambda source: None)


@models_group.command("pull")
@click.argument("model_id")
def pull(model_id: str) -> None:
    """Download a model (registered id, alias, or hub repo id) into the local cache."""
    spec = _spec(model_id)
    location, patterns = spec.location, spec.allow_patterns
    if spec.prepare is not None:
        click.echo(f"Built {spec.id} locally at {spec.prepare()} (it needs no download).")
        return
    if Path(location).expanduser().is_dir():
        click.echo(f"'{model_id}' is the local directory {location}; nothing to pull.")
        return
    try:
        path = resolve_model_path(location, allow_patterns=list(patterns or DEFAULT_PULL_PATTERNS))
    except ModelUnavailableError as exc:
        raise ModelUnavailableError(_pull_failure(location, exc)) from exc
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    click.echo(f"Pulled {location} ({format_bytes(size)}) to {path}")


def _pull_failure(location: str, exc: ModelUnavailableError) -> str:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    original = getattr(exc, "cause", None) or exc.__cause__  # resolve_model_path keeps it
    if isinstance(original, (GatedRepoError, RepositoryNotFoundError)) or not original:
        return str(exc)
    if env_flag("HF_HUB_OFFLINE"):
        return (f"Cannot pull '{location}': HF_HUB_OFFLINE is set, so nothing can be downloaded."
                " Unset it and retry.")
    cause = " ".join(f"{type(original).__name__}: {original}".split())[:300]
    return (f"Cannot pull '{location}': the Hugging Face Hub could not be reached ({cause}). "
            "Check the network connection (and HF_ENDPOINT or proxy settings), then retry.")


@models_group.command("rm")
@click.argument("model_id")
def rm(model_id: str) -> None:
    """Delete a downloaded model from the local cache."""
    location = _spec(model_id).location
    if Path(location).expanduser().is_dir():
        raise ModelUnavailableError(
            f"'{model_id}' is the local directory {location}, not a download in the cache; "
            "mlx-rag does not delete your directories (remove it yourself if you want)."
        )
    get_registry().unload(model_id)
    repo = remove_cached(location)
    click.echo(f"Removed {location} from the cache ({format_bytes(repo.size_bytes)} freed).")
