"""The musicgen exception hierarchy.

Every error a user can cause derives from MusicGenError (a rag_core RagError), so the
mlx-rag CLI reports it as "Error: ..." without a traceback. Bad argument values are also
ValueErrors; unusable checkpoints are also ModelUnavailableErrors.
"""

from __future__ import annotations

from rag_core import ModelUnavailableError, RagError


class MusicGenError(RagError):
    """Base class of all musicgen errors."""


class InvalidArgumentError(MusicGenError, ValueError):
    """An argument (prompt, duration, sampling option, audio) has a bad value; raised early."""


class CheckpointError(MusicGenError, ModelUnavailableError):
    """A checkpoint is incomplete or inconsistent; the message names the file and the problem."""


class AudioError(MusicGenError):
    """Audio could not be written or read."""
