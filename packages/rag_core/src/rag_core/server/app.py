"""The Starlette app behind `mlx-rag serve`, and serving it with uvicorn.

    app = create_app(token=None)          # what tests drive with Starlette's TestClient
    serve("127.0.0.1", 8321, token=None)  # what the command runs

Models stay loaded in the process-wide registry between requests (under its memory budget),
so only the first request for a model pays its load.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rag_core.errors import RagError
from rag_core.plugins import get_host
from rag_core.server import api, openai_api
from rag_core.server.errors import describe, error_body
from rag_core.server.security import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOOPBACK_NAMES,
    RequestGuard,
    check_bind,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {  # the page renders stored text: keep it from running anything it holds
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}  # fmt: skip
log = logging.getLogger(__name__)


def create_app(
    *,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The app: rag_core's endpoints, the plugins' endpoints, the web page.

    ``token``: required as ``Authorization: Bearer TOKEN`` on all but /health and the page.
    ``allowed_hosts``: the Host names answered (None: any; for a server behind a token).
    """
    host = get_host()  # plugins load now: a broken config fails at start, not on a request
    plugin_routes = [Route(e.path, e.handler, methods=list(e.methods))
                     for e in host.routes.endpoints()]
    routes = [
        *api.ROUTES,
        *openai_api.ROUTES,
        *plugin_routes,
        Route("/", index, methods=["GET"]),
        Route("/plugins/{plugin}/{name}", page_module, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestGuard, token=token, allowed_hosts=allowed_hosts,
                               max_body_bytes=max_body_bytes)],
        exception_handlers={HTTPException: http_exception, RagError: request_error,
                            ValueError: request_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.token = token
    return app


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    yield
    get_host().jobs.shutdown()  # cancel what still runs; its outputs are cleaned up


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def page_module(request: Request) -> Response:
    url = request.url.path
    module = next((m for m in get_host().routes.page_modules() if m.url == url), None)
    if module is None:
        raise HTTPException(404)
    return FileResponse(module.file, media_type="text/javascript",
                        headers={"X-Content-Type-Options": "nosniff"})


async def http_exception(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors (no such route, method not allowed) as JSON."""
    messages = {404: f"No endpoint {request.method} {request.url.path} (see docs/server.md).",
                405: f"{request.method} is not allowed on {request.url.path}."}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                        headers=exc.headers)


async def request_error(request: Request, exc: Exception) -> Response:
    status, body = describe(exc)
    if status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(body, status_code=status, headers=getattr(exc, "headers", None))


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: the traceback goes to the server log, never to the client."""
    return JSONResponse(describe(exc)[1], status_code=500)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); RagError says why it cannot."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise RagError(f"Cannot listen on {host}: {exc.strerror or exc}.") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = (" Another server runs there: stop it or choose another --port."
                if exc.errno in (98, 48, 10048) else "")
        raise RagError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.{hint}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    *,
    on_listening: Callable[[str], None] = print,
) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM); ``on_listening(url)`` once the port is bound."""
    import uvicorn

    check_bind(host, token)
    loopback = tuple(dict.fromkeys((*LOOPBACK_NAMES, host.strip("[]").lower())))
    app = create_app(token=token, allowed_hosts=None if token else loopback)
    sock = listen(host, port)
    on_listening(url_of(sock))
    config = uvicorn.Config(app, log_level="info", server_header=False, lifespan="on",
                            timeout_graceful_shutdown=30)

    class Server(uvicorn.Server):
        """Ctrl-C and SIGTERM are how a server is meant to end: after the graceful shutdown the
        command exits 0, where uvicorn would raise the signal again for an embedding program."""

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                getattr(self, "_captured_signals", []).clear()

    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
