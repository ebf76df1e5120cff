"""Who may talk to the server: the bind address rule, the bearer token, Host names, body size.

- Loopback only, unless a token is set: ``check_bind`` refuses any other address without one.
- With a token, every request but ``/health`` and the static page needs
  ``Authorization: Bearer TOKEN`` (compared in constant time).
- Without a token, only loopback Host names are answered, so a web site cannot reach the server
  through a DNS name it rebinds to 127.0.0.1.
- Bodies larger than the limit get a 413 before (or while) they are read.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from rag_core.errors import RagError
from rag_core.server.errors import HTTPError, error_body

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = ("/health", "/")
PUBLIC_PREFIXES = ("/static/", "/plugins/")
MIN_TOKEN_LENGTH = 16  # for a server other machines can reach


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (and with a guessable one)."""
    if token is not None and (not token or any(c.isspace() for c in token)):
        raise RagError("The token must be a non-empty string without spaces.")
    if is_loopback(host):
        return
    if not token:
        raise RagError(
            f"Refusing to listen on {host} without a token: anyone who can reach this machine "
            "could use the server and its models. Pass --token TOKEN (or set MLX_RAG_TOKEN), "
            "e.g. a token from `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
            "or keep the default --host 127.0.0.1."
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise RagError(f"The token is too short for a server other machines can reach: use at "
                       f"least {MIN_TOKEN_LENGTH} characters (e.g. secrets.token_urlsafe(32)).")


def host_name(header: str) -> str:
    """The name part of a Host header: 'localhost:8321' -> 'localhost', '[::1]:80' -> '::1'."""
    header = header.strip()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class RequestGuard:
    """ASGI middleware applying the rules above before a request reaches the app.

    ``allowed_hosts``: Host names to answer (None: any). ``token``: None for no token.
    """

    def __init__(self, app, *, token: str | None, allowed_hosts: tuple[str, ...] | None,
                 max_body_bytes: int):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        refusal = self.refusal(scope["path"], headers)
        if refusal is not None:
            return await _send_error(send, refusal)
        limit = self.max_body_bytes
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, limited_receive, send)

    def refusal(self, path: str, headers: dict[bytes, bytes]) -> HTTPError | None:
        if self.allowed_hosts is not None:
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host.lower() not in self.allowed_hosts:
                return HTTPError(
                    400, f"This server answers only requests for {', '.join(self.allowed_hosts)} "
                         f"(got Host: {host or 'none'}). Start it with a --token to serve other "
                         "names.", "Host")
        if self.expected is not None and not is_public(path):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                what = "is missing" if not given else "is not valid"
                return HTTPError(401, f"This server needs 'Authorization: Bearer TOKEN'; the "
                                      f"token {what}.", "Authorization",
                                 {"www-authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                return HTTPError(400, "The Content-Length header is not a number.",
                                 "Content-Length")
            if too_big:
                return _too_large(self.max_body_bytes)
        return None


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"The request body is larger than the limit of {limit} bytes.", "body")


async def _send_error(send, error: HTTPError) -> None:
    body = json.dumps(error_body(error.status, str(error), error.field)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
