"""`mlx-rag serve`: the HTTP server (OpenAI-compatible API, search, pipelines, web page)."""

from __future__ import annotations

import click

from rag_core.cli.process import end_process
from rag_core.server.security import DEFAULT_HOST, DEFAULT_PORT, is_loopback


@click.command("serve")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on. Any address but loopback needs --token.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the URL is printed).")
@click.option("--token", envvar="MLX_RAG_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on every endpoint but /health "
                   "(or set MLX_RAG_TOKEN, which other users cannot see in the process list).")
def serve_command(host: str, port: int, token: str | None) -> None:
    """Serve the models, the store and the web page over HTTP until Ctrl-C.

    Models stay loaded between requests. See docs/server.md for the API.
    """
    from rag_core.server.app import serve

    def on_listening(url: str) -> None:
        where = "this machine only" if is_loopback(host) else "the network, behind the token"
        click.echo(f"Serving on {url} ({where}); the web page is at {url}/ . Ctrl-C stops.",
                   err=True)

    serve(host, port, token, on_listening=on_listening)
    end_process(0, wait_for_threads=False)

