"""`mlx-rag serve`: the HTTP server over the library (OpenAI-compatible API, search, pipelines,
jobs, plugins' endpoints) and its web page.

This package root stays light (no web stack imported) because plugins use it at load time:

    from rag_core.server import Endpoint, HTTPError, PageModule, read_json

The app itself is ``rag_core.server.app.create_app()``.
"""

from rag_core.server.errors import HTTPError
from rag_core.server.requests import Fields, read_json
from rag_core.server.routes import Endpoint, PageModule

__all__ = ["Endpoint", "Fields", "HTTPError", "PageModule", "read_json"]
