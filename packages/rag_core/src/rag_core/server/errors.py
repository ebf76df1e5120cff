"""Errors as the server reports them: a status and a JSON body in OpenAI's error shape.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "k", "code": null}}

``param`` names the request field at fault (or the header, e.g. ``Authorization``).
"""

from __future__ import annotations

from rag_core.errors import (
    ModelNotFoundError,
    ModelUnavailableError,
    RagError,
    StoreError,
    ToolNotFoundError,
)
from rag_core.jobs import JobNotFoundError, JobStateError

# First match wins; anything else a handler raises is a 500 whose details stay in the log.
STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (ModelNotFoundError, 404),
    (ToolNotFoundError, 404),
    (JobNotFoundError, 404),
    (JobStateError, 409),
    (StoreError, 409),
    (ModelUnavailableError, 503),
    (RagError, 400),
    (ValueError, 400),
)
TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         409: "conflict_error", 413: "request_too_large", 415: "invalid_request_error"}


class HTTPError(RagError):
    """A request the server answers with ``status`` and a message naming the ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers or {}


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception raised while handling a request (500 if unexpected)."""
    if isinstance(exc, HTTPError):
        return exc.status
    return next((status for kind, status in STATUS_OF if isinstance(exc, kind)), 500)


def error_body(status: int, message: str, field: str | None = None, code: str | None = None
               ) -> dict:
    """The JSON body of an error response."""
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": field, "code": code}}


def describe(exc: BaseException) -> tuple[int, dict]:
    """(status, body) for an exception; unexpected ones say only that the log has the details."""
    status = status_of(exc)
    if status == 500:
        return status, error_body(500, "Internal server error; the server log has the details.")
    return status, error_body(status, str(exc), getattr(exc, "field", None))
