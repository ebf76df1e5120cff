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

    @classmethod
    def between(cls, what: str, key: str, first: str, second: str) -> DuplicateRegistrationError:
        """The error for ``second`` registering ``what`` ``key`` that ``first`` already holds."""
        if first == second:
            return cls(f"Plugin '{first}' registered {what} '{key}' twice.")
        return cls(
            f"{what[0].upper()}{what[1:]} '{key}' is registered by both plugin '{first}' and "
            f"plugin '{second}'. Disable one of them (e.g. [plugins] disabled = [\"{second}\"] in "
            "the config) or uninstall it."
        )


class ModelNotFoundError(RagError):
    """No registered model or pattern matches the requested id."""


class ModelKindError(ModelNotFoundError):
    """The id names a model, but of another kind than the one asked for (an LLM where a music
    model is needed)."""


class ModelUnavailableError(RagError):
    """A model is registered but its files cannot be reached (offline, not cached, bad path)."""


class ToolNotFoundError(RagError):
    """A pipeline step or command names a tool that no enabled plugin registered."""


class PipelineError(RagError):
    """A pipeline definition or run is invalid."""


class StoreError(RagError):
    """The document store is missing, empty or corrupt."""
