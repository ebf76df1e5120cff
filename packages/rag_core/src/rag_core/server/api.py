"""rag_core's own endpoints: /health, /api/search, /api/run/{pipeline} and /api/jobs.

A pipeline run is a job (a pipeline may make music, which takes a while): POST answers 202
with the job, ``GET /api/jobs/{id}`` follows it and ``DELETE /api/jobs/{id}`` cancels it.
``"wait": true`` in the body answers only when the run has finished, with the finished job.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rag_core import __version__
from rag_core.config import get_config
from rag_core.errors import RagError
from rag_core.jobs import FINISHED, JobContext
from rag_core.pipeline import plan, run_record
from rag_core.plugins import get_host, get_jobs
from rag_core.search import MODES
from rag_core.server.errors import HTTPError, status_of
from rag_core.server.library import search
from rag_core.server.requests import Fields, read_json

CORE_FEATURES = ("chat", "embeddings", "search", "pipelines", "jobs")
MAX_SEARCH_K = 100
PIPELINE_KEY = "pipeline"  # pipelines run one at a time; their steps share the model lanes


def health_record(auth: bool) -> dict:
    """What /health says: that the server is up, what it offers and whether it needs a token."""
    host = get_host()
    plugins = [
        {"name": r.name, "version": r.version, "routes": r.routes}
        for r in host.records.values() if r.status == "enabled"
    ]
    with_parts = sorted({e.plugin for e in host.routes.endpoints()}
                        | {m.plugin for m in host.routes.page_modules()})
    return {
        "status": "ok", "version": __version__, "auth": auth,
        "features": [*CORE_FEATURES, *with_parts],
        "plugins": plugins,
        "page_modules": [m.url for m in host.routes.page_modules()],
        "jobs": {s: n for s in ("queued", "running")
                 if (n := sum(j.status == s for j in host.jobs.jobs()))},
    }  # fmt: skip


async def health(request: Request) -> Response:
    auth = request.app.state.token is not None
    return JSONResponse(await run_in_threadpool(health_record, auth))


async def search_endpoint(request: Request) -> Response:
    body = Fields(await read_json(request), allowed=("query", "k", "mode"))
    query = body.text("query", required=True)
    k = body.integer("k", 5, minimum=1, maximum=MAX_SEARCH_K)
    mode = body.text("mode", "auto", choices=MODES)
    response = await run_in_threadpool(search, query, k, mode)
    return JSONResponse(response.to_dict())


def _pipeline_work(name: str, question: str):
    """The job that runs pipeline ``name`` and returns what `mlx-rag run --json` prints."""

    def work(ctx: JobContext) -> dict:
        return run_record(name, question, progress=ctx.progress)

    return work


async def run_endpoint(request: Request) -> Response:
    name = request.path_params["pipeline"]
    body = Fields(await read_json(request), allowed=("question", "wait"))
    question = body.text("question", required=True)
    wait = body.flag("wait")
    config = get_config()
    if name not in config.pipelines:
        known = ", ".join(sorted(config.pipelines)) or "none"
        raise HTTPError(404, f"No pipeline named '{name}' (configured: {known}).", "pipeline")
    try:
        await run_in_threadpool(plan, name, config)  # a bad step fails now, not in the job
    except RagError as exc:  # a bad step, or a tool of a disabled plugin
        raise HTTPError(status_of(exc), str(exc), "pipeline") from None
    job = get_jobs().submit(_pipeline_work(name, question), kind="pipeline",
                            key=PIPELINE_KEY, info={"pipeline": name, "question": question})
    if wait:
        job = await run_in_threadpool(get_jobs().wait, job.id)
        return JSONResponse(job.to_dict(), status_code=200)
    return job_accepted(job)


def job_accepted(job) -> Response:
    """202 with the job and where to follow it: what an endpoint that queues work answers."""
    return JSONResponse(job.to_dict(), status_code=202,
                        headers={"Location": f"/api/jobs/{job.id}"})


async def list_jobs(request: Request) -> Response:
    kind = request.query_params.get("kind") or None
    return JSONResponse({"jobs": [j.to_dict() for j in get_jobs().jobs(kind)]})


async def get_job(request: Request) -> Response:
    return JSONResponse(get_jobs().get(request.path_params["id"]).to_dict())


async def cancel_job(request: Request) -> Response:
    """200 once cancelled; 202 while a running job is on its way to stop."""
    job = get_jobs().cancel(request.path_params["id"])
    return JSONResponse(job.to_dict(), status_code=200 if job.status in FINISHED else 202)


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/api/search", search_endpoint, methods=["POST"]),
    Route("/api/run/{pipeline}", run_endpoint, methods=["POST"]),
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{id}", get_job, methods=["GET"]),
    Route("/api/jobs/{id}", cancel_job, methods=["DELETE"]),
]
