"""Resolve a model source (local directory or Hugging Face repo id) to a local directory.

One place for downloads, the HF cache and offline mode, so every model loader reports an
unreachable model the same way.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rag_core.errors import ModelUnavailableError


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def looks_like_repo_id(source: str) -> bool:
    """True for 'owner/name' ids that are not an existing local path."""
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not Path(source).expanduser().exists()


def resolve_model_path(
    source: str | os.PathLike,
    allow_patterns: list[str] | None = None,
    *,
    progress: bool = True,
    local_files_only: bool = False,
) -> Path:
    """Return a local directory holding ``source``'s files, downloading them if needed.

    ``source`` is a local directory or a hub repo id. Downloads fetch only ``allow_patterns``,
    show a progress bar, and honour ``HF_HUB_OFFLINE`` and the local HF cache.
    Raises ModelUnavailableError with instructions when the files cannot be had; it is raised
    without the transport's exception chain (pages of HTTP internals), which stays reachable
    as its ``cause`` attribute (and ``__context__``) for debugging.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    source = str(source)
    if path.exists() or not looks_like_repo_id(source):
        raise ModelUnavailableError(
            f"'{source}' is neither a local model directory nor a Hugging Face repo id "
            "of the form 'owner/name'."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    env_offline = _offline()
    try:
        if not progress:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        return Path(snapshot_download(source, allow_patterns=allow_patterns,
                                      local_files_only=local_files_only or env_offline))
    except GatedRepoError as exc:
        raise unavailable(
            f"'{source}' is gated on the Hugging Face Hub: accept its terms on the website and "
            "log in with `hf auth login`, then retry.", exc
        ) from None
    except RepositoryNotFoundError as exc:
        raise unavailable(
            f"'{source}' was not found on the Hugging Face Hub (check the spelling, or log in "
            "if it is private).", exc
        ) from None
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        where = ("HF_HUB_OFFLINE is set and it" if env_offline else
                 "only the local cache was searched and it" if local_files_only else
                 "the Hub could not be reached and it")
        raise unavailable(
            f"Model '{source}' is not available: {where} is not in the local cache "
            f"({cache_dir()}). Fix: connect to the internet and run "
            f"`mlx-rag models pull {source}`, or copy the model into the cache (HF_HOME), "
            "or pass a local directory instead.", exc
        ) from None
    except Exception as exc:  # huggingface_hub raises many HTTP/transport error types
        raise unavailable(
            f"Could not download '{source}' from the Hugging Face Hub: {exc}. Check the network, "
            f"or pass a local directory instead.", exc
        ) from None


def unavailable(message: str, cause: BaseException) -> ModelUnavailableError:
    """A ModelUnavailableError to raise ``from None``, its original exception kept as
    ``cause``."""
    error = ModelUnavailableError(message)
    error.cause = cause
    return error


def cache_dir() -> Path:
    """The Hugging Face hub cache directory in use."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


# Files `mlx-rag models pull` fetches when a spec names none: weights, configs, tokenizers.
DEFAULT_PULL_PATTERNS = (
    "*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja",
)


@dataclass(frozen=True)
class CachedRepo:
    """A model repo in the local Hugging Face cache."""

    repo_id: str
    path: Path
    size_bytes: int


def cached_repos() -> dict[str, CachedRepo]:
    """The model repos in the local Hugging Face cache, by repo id."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return {}
    return {
        repo.repo_id: CachedRepo(repo.repo_id, Path(repo.repo_path), repo.size_on_disk)
        for repo in info.repos
        if repo.repo_type == "model"
    }


def remove_cached(repo_id: str) -> CachedRepo:
    """Delete a model repo (all revisions) from the local cache; error if it is not there."""
    repo = cached_repos().get(repo_id)
    if repo is None:
        raise ModelUnavailableError(
            f"'{repo_id}' is not in the local cache ({cache_dir()}); nothing to remove."
        )
    shutil.rmtree(repo.path)
    return repo
