"""MLX-RAG core: a pluggy plugin host with a shared MLX model registry, tools and pipelines.

    import rag_core
    registry = rag_core.get_registry()          # models registered by the enabled plugins
    model = registry.get("facebook/musicgen-small", kind="music")
    state = rag_core.run_pipeline("ask", "What is MLX?")
    job = rag_core.get_jobs().submit(work, kind="music", key=model_id)   # background work

This top level is the whole API a plugin needs: the hooks and what they register (``hookimpl``,
``ModelSpec``, ``ModelPattern``, ``Tool``, ``Endpoint``, ``PageModule``), the registry, tools,
pipelines and jobs, the config and the data dir (``home_dir``), the hub (``resolve_model_path``,
``looks_like_repo_id``), retrieval and the LLM (``retrieve``, ``ingest_paths``, ``get_llm``),
the CLI's output helpers (``note``, ``progress_bar``, ``is_quiet``, ``short``, ``echo_json``,
``echo_table``, ``exit_code``, ``interrupted_by``), the phases MLX_RAG_TIMINGS prints
(``mark_phase``), the BLAS MLX's CPU products run on and the cores (``blas_status``,
``usable_cores``), GELU with a rational erf (``gelu_rational``), the server's (``read_json``,
``Fields``, ``HTTPError``, ``job_accepted``) and the errors. Helpers that would slow ``import
rag_core`` (the CLI, the store, the web stack) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rag_core.blas import blas_status, route_mlx_blas, usable_cores
from rag_core.config import Config, get_config, home_dir, load_config, set_config
from rag_core.errors import (
    ConfigError,
    DuplicateRegistrationError,
    ModelKindError,
    ModelNotFoundError,
    ModelUnavailableError,
    PipelineError,
    PluginError,
    RagError,
    StoreError,
    ToolNotFoundError,
)
from rag_core.hookspecs import hookimpl
from rag_core.hub import looks_like_repo_id, resolve_model_path
from rag_core.jobs import Job, JobCancelled, JobContext, JobQueue
from rag_core.pipeline import PipelineState, run_pipeline
from rag_core.plugins import (
    DocumentLoader,
    get_host,
    get_jobs,
    get_loaders,
    get_registry,
    get_tool,
    model_lane,
)
from rag_core.registry import ModelPattern, ModelRegistry, ModelSpec
from rag_core.server import Endpoint, Fields, HTTPError, PageModule, read_json
from rag_core.timings import mark_phase
from rag_core.tools import Tool

try:
    from importlib.metadata import version as _version

    __version__ = _version("rag-core")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0+unknown"

# name -> the module that defines it, imported on first use (each would pull in the CLI or the
# store, and with them numpy, at `import rag_core`).
_LAZY = {
    "note": "rag_core.cli.output",
    "progress_bar": "rag_core.cli.output",
    "is_quiet": "rag_core.cli.output",
    "short": "rag_core.cli.output",
    "echo_json": "rag_core.cli.output",
    "echo_table": "rag_core.cli.output",
    "exit_code": "rag_core.cli.signals",
    "interrupted_by": "rag_core.cli.signals",
    "retrieve": "rag_core.retrieval",
    "ingest_paths": "rag_core.retrieval",
    "get_llm": "rag_core.retrieval",
    "LanguageModel": "rag_core.answer",
    "STOP_WORDS": "rag_core.search",
    "job_accepted": "rag_core.server.api",  # imports the web stack
    "gelu_rational": "rag_core.activations",  # imports MLX
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rag_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "STOP_WORDS",
    "Config",
    "ConfigError",
    "DocumentLoader",
    "DuplicateRegistrationError",
    "Endpoint",
    "Fields",
    "HTTPError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobQueue",
    "LanguageModel",
    "ModelKindError",
    "ModelNotFoundError",
    "ModelPattern",
    "ModelRegistry",
    "ModelSpec",
    "ModelUnavailableError",
    "PageModule",
    "PipelineError",
    "PipelineState",
    "PluginError",
    "RagError",
    "StoreError",
    "Tool",
    "ToolNotFoundError",
    "blas_status",
    "echo_json",
    "echo_table",
    "exit_code",
    "gelu_rational",
    "get_config",
    "get_host",
    "get_jobs",
    "get_llm",
    "get_loaders",
    "get_registry",
    "get_tool",
    "home_dir",
    "hookimpl",
    "ingest_paths",
    "interrupted_by",
    "is_quiet",
    "job_accepted",
    "load_config",
    "looks_like_repo_id",
    "mark_phase",
    "model_lane",
    "note",
    "progress_bar",
    "read_json",
    "resolve_model_path",
    "retrieve",
    "run_pipeline",
    "set_config",
    "short",
    "usable_cores",
]

route_mlx_blas()  # MLX's CPU matrix products through an optimized BLAS (rag_core.blas)
