"""rag_core's own plugin (name "rag_core"): the retrieval models and the `retrieve`/`answer` tools.

Loaded by the plugin manager like any other plugin (filled in by the retrieval work).
"""

from __future__ import annotations

from rag_core.hookspecs import hookimpl


@hookimpl
def register_models(register):
    """Register the default embedding and LLM models."""


@hookimpl
def register_tools(register):
    """Register the `retrieve` and `answer` tools."""
