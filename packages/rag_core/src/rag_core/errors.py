"""The rag_core exception hierarchy: every error a user can cause derives from RagError.

The CLI prints a RagError's message (never a traceback) and exits non-zero, so each
message says what went wrong and what to do about it.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of all user-facing rag_core errors."""

    exit_code = 1


class ConfigError(RagError):
    """A config file or value is invalid; the message names the file and the key."""


class PluginError(RagError):
    """A plugin failed to load or registered something invalid."""


class DuplicateRegistrationError(PluginError):
    """Two plugins registered the same id; the message names both."""


class ModelNotFoundError(RagError):
    """No registered model or pattern matches the requested id."""


class ModelUnavailableError(RagError):
    """A model is registered but its files cannot be reached (offline, not cached, bad path)."""


class ToolNotFoundError(RagError):
    """A pipeline step or command names a tool that no enabled plugin registered."""


class PipelineError(RagError):
    """A pipeline definition or run is invalid."""


class StoreError(RagError):
    """The document store is missing, empty or corrupt."""
