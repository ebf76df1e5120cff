"""The hooks a plugin may implement. Each docstring is the plugin author's whole contract."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "mlx_rag"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_models(register):
    """Register MLX models in the shared registry.

    Call ``register(spec)`` with a ``rag_core.ModelSpec`` (id, kind, loader, aliases, size)
    for each model, or ``register(pattern)`` with a ``rag_core.ModelPattern`` for a family
    of sources the plugin can load (for example any local directory whose config.json has
    ``model_type = "musicgen"``). Loaders are called lazily, at most once per model, by
    ``registry.get(id)``. ``allow_patterns`` names the files ``mlx-rag models pull`` fetches;
    ``prepare()``, for models built locally rather than downloaded, is what ``pull`` calls
    instead. An id or alias that another plugin registered is an error.
    """


@hookspec
def register_tools(register):
    """Register named tools that pipeline steps and commands call.

    Call ``register(tool)`` with a ``rag_core.Tool``: a name, a description and a
    ``run(state, **options)`` callable that receives the pipeline state (question,
    retrieved chunks, answer, earlier step outputs) and returns a result record.
    A name that another plugin registered is an error.
    """


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``mlx-rag`` CLI: ``cli.add_command(...)``.

    Keep command functions thin and raise ``rag_core.RagError`` subclasses for bad input;
    the CLI prints their message and exits non-zero.
    """


@hookspec
def register_loaders(register):
    """Register document loaders for ``mlx-rag ingest``.

    Call ``register(suffixes, load)`` where ``suffixes`` is a tuple like ``(".pdf",)`` and
    ``load(path) -> str`` returns the document's text. Raise ``ValueError`` for a file that
    cannot be read; ingest skips it with a warning naming the file.
    """


@hookspec
def register_routes(register):
    """Add endpoints to the ``mlx-rag serve`` HTTP API, and a part to its web page.

    Call ``register(rag_core.Endpoint(path, handler, methods=("GET",)))`` per endpoint: ``path``
    starts with ``/api/`` and may hold parameters (``/api/tracks/{id}``); ``handler(request)``
    is an async Starlette endpoint returning a Response. The server checks the token first and
    turns ``ValueError``/``rag_core.RagError`` (``rag_core.HTTPError`` for a status and field
    of your choice) into JSON errors; ``rag_core.server.read_json(request)`` reads a body.
    Long work goes to ``rag_core.get_jobs().submit(work, kind=..., key=model_id)``: answer
    202 with ``job.to_dict()``; ``GET``/``DELETE /api/jobs/{id}`` serve every job.
    Call ``register(rag_core.PageModule(file))`` with a JavaScript module whose exported
    ``mount(page)`` adds the plugin's part to the page at ``/`` (see docs/server.md).
    A method and path that another plugin registered is an error.
    """
