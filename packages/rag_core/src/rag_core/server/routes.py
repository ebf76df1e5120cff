"""What plugins add to the server through ``register_routes``: endpoints and page modules.

Kept free of Starlette so that loading plugins (every CLI call) does not import the web stack.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_core.errors import DuplicateRegistrationError, PluginError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PLUGIN_PREFIX = "/api/"
CORE_PATHS = ("/api/search", "/api/run/", "/api/jobs")  # served by rag_core itself
PATH = re.compile(r"^/api(/([A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}))+$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.js$")


@dataclass(frozen=True)
class Endpoint:
    """An HTTP endpoint: ``handler(request)`` is an async Starlette endpoint for ``path``."""

    path: str
    handler: Callable[[Any], Awaitable[Any]]
    methods: tuple[str, ...] = ("GET",)
    description: str = ""
    plugin: str = ""  # set by the host

    @property
    def labels(self) -> list[str]:
        """``["POST /api/music"]``: how /health and `plugins list` show it."""
        return [f"{m} {self.path}" for m in self.methods]


@dataclass(frozen=True)
class PageModule:
    """A JavaScript module for the web page; its exported ``mount(page)`` adds the plugin's part.

    Served without the token at ``/plugins/PLUGIN/FILENAME`` (it is code, not data).
    """

    file: Path
    plugin: str = ""  # set by the host

    @property
    def url(self) -> str:
        return f"/plugins/{self.plugin}/{Path(self.file).name}"


class RouteTable:
    """The plugins' endpoints by (method, path) and their page modules, each owned by a plugin."""

    def __init__(self) -> None:
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        self._modules: dict[str, PageModule] = {}  # by url
        self._lock = threading.Lock()

    def register(self, item: Endpoint | PageModule, plugin: str) -> list[str]:
        """Check and add an endpoint or page module; returns the labels to record for it."""
        if isinstance(item, Endpoint):
            return self._add_endpoint(_checked_endpoint(item, plugin))
        if isinstance(item, PageModule):
            return self._add_module(_checked_module(item, plugin))
        raise PluginError(f"register() in register_routes takes a rag_core.Endpoint or a "
                          f"rag_core.PageModule, got {type(item).__name__} (plugin '{plugin}').")

    def _add_endpoint(self, endpoint: Endpoint) -> list[str]:
        with self._lock:
            for method in endpoint.methods:
                taken = self._endpoints.get((method, endpoint.path))
                if taken is not None:
                    raise DuplicateRegistrationError.between(
                        "endpoint", f"{method} {endpoint.path}", taken.plugin, endpoint.plugin)
            for method in endpoint.methods:
                self._endpoints[(method, endpoint.path)] = endpoint
        return endpoint.labels

    def _add_module(self, module: PageModule) -> list[str]:
        with self._lock:
            if module.url in self._modules:
                raise DuplicateRegistrationError.between("page module", module.url,
                                                         module.plugin, module.plugin)
            self._modules[module.url] = module
        return [f"page {module.url}"]

    def remove_plugin(self, plugin: str) -> None:
        with self._lock:
            self._endpoints = {k: e for k, e in self._endpoints.items() if e.plugin != plugin}
            self._modules = {k: m for k, m in self._modules.items() if m.plugin != plugin}

    def endpoints(self) -> list[Endpoint]:
        """Each endpoint once, in registration order."""
        with self._lock:
            return list(dict.fromkeys(self._endpoints.values()))

    def page_modules(self) -> list[PageModule]:
        with self._lock:
            return list(self._modules.values())


def _checked_endpoint(endpoint: Endpoint, plugin: str) -> Endpoint:
    methods = (endpoint.methods,) if isinstance(endpoint.methods, str) else endpoint.methods
    methods = tuple(str(m).upper() for m in methods)
    endpoint = dataclasses.replace(endpoint, methods=methods, plugin=plugin)
    where = f"Plugin '{plugin}' registered endpoint {endpoint.path!r}"
    path = endpoint.path
    if not isinstance(path, str) or not PATH.match(path) or {".", ".."} & set(path.split("/")):
        raise PluginError(f"{where}: a path must start with {PLUGIN_PREFIX} and hold only "
                          "letters, digits, '._~-' and {parameters}, e.g. /api/tracks/{id}.")
    if any(endpoint.path == p.rstrip("/") or endpoint.path.startswith(p.rstrip("/") + "/")
           for p in CORE_PATHS):
        raise PluginError(f"{where}: that path belongs to rag_core's own API.")
    if not methods or any(m not in METHODS for m in methods):
        raise PluginError(f"{where} with methods {methods!r}; use some of {', '.join(METHODS)}.")
    if not callable(endpoint.handler):
        raise PluginError(f"{where} without a callable handler(request).")
    return endpoint


def _checked_module(module: PageModule, plugin: str) -> PageModule:
    file = Path(module.file)
    if not FILE_NAME.match(file.name) or not file.is_file():
        raise PluginError(f"Plugin '{plugin}' registered page module {str(file)!r}: it must be "
                          "an existing .js file (a name of letters, digits, '._-').")
    return dataclasses.replace(module, file=file.resolve(), plugin=plugin)
