"""MLX-RAG core: a pluggy plugin host with a shared MLX model registry, tools and pipelines.

    import rag_core
    registry = rag_core.get_registry()          # models registered by the enabled plugins
    model = registry.get("facebook/musicgen-small")
    state = rag_core.run_pipeline("ask", "What is MLX?")
"""

from __future__ import annotations

from rag_core.blas import route_mlx_blas
from rag_core.config import Config, get_config, load_config, set_config
from rag_core.errors import (
    ConfigError,
    DuplicateRegistrationError,
    ModelNotFoundError,
    ModelUnavailableError,
    PipelineError,
    PluginError,
    RagError,
    StoreError,
    ToolNotFoundError,
)
from rag_core.hookspecs import hookimpl
from rag_core.hub import resolve_model_path
from rag_core.pipeline import PipelineState, run_pipeline
from rag_core.plugins import DocumentLoader, get_host, get_loaders, get_registry, get_tool
from rag_core.registry import ModelPattern, ModelRegistry, ModelSpec
from rag_core.tools import Tool

try:
    from importlib.metadata import version as _version

    __version__ = _version("rag-core")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0+unknown"

__all__ = [
    "Config",
    "ConfigError",
    "DocumentLoader",
    "DuplicateRegistrationError",
    "ModelNotFoundError",
    "ModelPattern",
    "ModelRegistry",
    "ModelSpec",
    "ModelUnavailableError",
    "PipelineError",
    "PipelineState",
    "PluginError",
    "RagError",
    "StoreError",
    "Tool",
    "ToolNotFoundError",
    "get_config",
    "get_host",
    "get_loaders",
    "get_registry",
    "get_tool",
    "hookimpl",
    "load_config",
    "resolve_model_path",
    "run_pipeline",
    "set_config",
]

route_mlx_blas()  # MLX's CPU matrix products through an optimized BLAS (rag_core.blas)
