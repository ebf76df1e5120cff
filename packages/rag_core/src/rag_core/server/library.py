"""The server's calls into the library, in one place: models from the shared registry, their
lanes, and searches of the store. Everything here blocks; endpoints call it from a thread."""

from __future__ import annotations

from contextlib import AbstractContextManager

from rag_core.config import get_config
from rag_core.errors import ModelNotFoundError, ModelUnavailableError
from rag_core.plugins import get_jobs, get_registry
from rag_core.registry import ModelSpec
from rag_core.retrieval import retrieve
from rag_core.search import SearchResponse
from rag_core.server.errors import HTTPError


def model_spec(model_id: str | None, kind: str, field: str = "model") -> ModelSpec:
    """The spec of a model of ``kind``: ``model_id`` (id, alias or local folder), else the one
    the config names for that kind. Errors name the request field."""
    model_id = model_id or get_config().get(f"{kind}.model")
    try:
        spec = get_registry().spec(model_id)
    except ModelNotFoundError as exc:
        raise HTTPError(404, str(exc), field) from None
    if spec.kind != kind:
        raise HTTPError(400, f"Model '{model_id}' is of kind '{spec.kind}', but this endpoint "
                             f"needs a model of kind '{kind}' (see GET /v1/models).", field)
    return spec


def load(spec: ModelSpec, field: str = "model"):
    """The loaded model: cached by the registry, so only the first request pays the load."""
    try:
        return get_registry().get(spec.id)
    except ModelUnavailableError as exc:  # e.g. offline and not in the cache
        raise HTTPError(503, str(exc), field) from None


def lane(spec: ModelSpec) -> AbstractContextManager:
    """Hold while computing with the model: one generation at a time per model, shared with
    the jobs queued for it."""
    return get_jobs().lane(spec.id)


def search(query: str, k: int, mode: str = "auto", field: str = "query") -> SearchResponse:
    """Search the configured store, with the notes on how (e.g. why only BM25) in the response.

    The store's embedding model's lane is held while the query is embedded (by ``retrieve``)."""
    notes: list[str] = []
    try:
        response = retrieve(query, k=k, mode=mode, note=notes.append)
    except ValueError as exc:  # e.g. a query of stop words only
        raise HTTPError(400, str(exc), field) from None
    response.notes = notes
    return response
