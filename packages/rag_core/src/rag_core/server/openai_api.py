"""The OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/embeddings.

Existing OpenAI clients work unchanged (base_url http://127.0.0.1:8321/v1). A request's
``model`` is any id, alias or local folder the registry accepts; left out, the config's
``[llm] model`` or ``[embedding] model``.
"""

from __future__ import annotations

import base64
import logging

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rag_core.config import get_config
from rag_core.errors import ModelNotFoundError
from rag_core.plugins import get_registry
from rag_core.registry import ModelRegistry, ModelSpec
from rag_core.server.chat import Completion, cited, generate, numbered, parse_chat_request
from rag_core.server.errors import HTTPError, describe
from rag_core.server.library import lane, load, model_spec, search
from rag_core.server.requests import Fields, bad, read_json
from rag_core.server.streaming import SSE_DONE, SSE_HEADERS, iterate_in_thread, run_in_thread, sse

KINDS = ("llm", "embedding")
MAX_INPUTS = 2048
log = logging.getLogger(__name__)


def model_record(spec: ModelSpec, configured: set[str]) -> dict:
    """A model as /v1/models lists it: OpenAI's fields, then ours."""
    return {
        "id": spec.id, "object": "model", "created": 0, "owned_by": spec.plugin or "rag_core",
        "kind": spec.kind, "aliases": list(spec.aliases), "description": spec.description,
        "loaded": get_registry().is_loaded(spec.id), "configured": spec.id in configured,
    }  # fmt: skip


def _configured(registry: ModelRegistry) -> tuple[list[ModelSpec], set[str]]:
    """The config's llm and embedding models (one naming an unknown model left out: requests
    for it say so), and their ids."""
    specs = []
    for kind in KINDS:
        try:
            specs.append(registry.spec(get_config().get(f"{kind}.model")))
        except ModelNotFoundError:
            continue
    return specs, {spec.id for spec in specs}


def _models() -> list[dict]:
    registry = get_registry()
    specs = {s.id: s for kind in KINDS for s in registry.specs(kind)}
    configured_specs, configured = _configured(registry)
    for spec in configured_specs:
        specs.setdefault(spec.id, spec)
    return [model_record(s, configured) for s in specs.values()]


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": await run_in_threadpool(_models)})


async def get_model(request: Request) -> Response:
    def find() -> dict:
        registry = get_registry()
        try:
            spec = registry.spec(request.path_params["model"])
        except ModelNotFoundError as exc:
            raise HTTPError(404, str(exc), "model") from None
        if spec.kind not in KINDS:
            raise HTTPError(404, f"'{spec.id}' is a model of kind '{spec.kind}'; this API "
                                 f"serves kinds {', '.join(KINDS)}.", "model")
        return model_record(spec, _configured(registry)[1])

    return JSONResponse(await run_in_threadpool(find))


async def chat_completions(request: Request) -> Response:
    chat = parse_chat_request(await read_json(request))
    spec = await run_in_threadpool(model_spec, chat.model, "llm")
    found = await run_in_threadpool(search, chat.question, chat.k, "auto", "messages")
    passages = [r.to_dict() for r in found.results]
    llm = await run_in_threadpool(load, spec)
    completion = Completion(spec.id)

    def deltas():
        with lane(spec):
            yield from generate(llm, chat, passages)

    if not chat.stream:
        return JSONResponse(completion.whole(await run_in_thread(deltas), passages))

    async def events():
        yield sse(completion.chunk({"role": "assistant", "content": ""},
                                   sources=numbered(passages)))
        text = []
        try:
            async for delta in iterate_in_thread(deltas):
                text.append(delta.text)
                if delta.text:
                    yield sse(completion.chunk({"content": delta.text}))
                if delta.finish_reason is not None:
                    yield sse(completion.chunk({}, delta.finish_reason,
                                               citations=cited("".join(text), passages)))
                    if chat.include_usage:
                        yield sse(completion.usage_chunk(delta))
        except Exception as exc:  # headers are sent: the error goes in the stream
            log.error("chat stream failed", exc_info=exc)
            yield sse(describe(exc)[1])
        yield SSE_DONE

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


def _inputs(value) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise bad("input", "must be a string or a non-empty array of strings")
    if len(texts) > MAX_INPUTS:
        raise bad("input", f"may hold at most {MAX_INPUTS} strings, got {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad(f"input[{i}]", "must be a string (token arrays are not supported)")
        if not text.strip():
            raise bad(f"input[{i}]" if isinstance(value, list) else "input", "must not be empty")
    return texts


def _count_tokens(embedder, texts: list[str]) -> int:
    tokenizer = getattr(embedder, "tokenizer", None)
    if not hasattr(tokenizer, "encode_batch"):
        return 0
    limit = getattr(embedder, "max_tokens", None) or 10**9
    return sum(min(len(e.ids), limit) for e in tokenizer.encode_batch(texts))


async def embeddings(request: Request) -> Response:
    body = Fields(await read_json(request),
                  allowed=("input", "model", "encoding_format", "dimensions", "user"))
    texts = _inputs(body.get("input", None, required=True))
    encoding = body.text("encoding_format", "float", choices=("float", "base64"))
    dimensions = body.integer("dimensions", minimum=1)
    spec = await run_in_threadpool(model_spec, body.text("model"), "embedding")

    def embed() -> tuple[np.ndarray, int]:
        embedder = load(spec)
        with lane(spec):
            vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
        return vectors.reshape(len(texts), -1), _count_tokens(embedder, texts)

    vectors, tokens = await run_in_threadpool(embed)
    if dimensions is not None and dimensions != vectors.shape[1]:
        raise bad("dimensions", f"must be {vectors.shape[1]} for '{spec.id}' (it cannot "
                                "shorten its vectors)")
    data = [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
            for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": spec.id,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
