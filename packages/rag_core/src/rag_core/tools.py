"""Tools: named callables that plugins register and pipeline steps call."""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rag_core.errors import DuplicateRegistrationError, PluginError, ToolNotFoundError


@dataclass(frozen=True)
class Tool:
    """``run(state, **options) -> dict``: reads the pipeline state, returns a JSON-able record."""

    name: str
    run: Callable[..., dict]
    description: str = ""
    plugin: str = ""  # set by the registry

    def option_names(self) -> tuple[str, ...] | None:
        """The options ``run`` takes after the state (what a ``[tools.NAME]`` section may set),
        from its signature; None when it takes any (``**options``) or has no signature."""
        try:
            parameters = list(inspect.signature(self.run).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                              p.KEYWORD_ONLY))


class ToolRegistry:
    """Tools by name, each owned by the plugin that registered it."""

    def __init__(self) -> None:
        self.missing_hint: Callable[[], str] | None = None  # extra text for ToolNotFoundError
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()

    def register(self, tool: Tool, plugin: str = "") -> None:
        """Add a tool; a name another plugin (or this one) registered is an error."""
        if not isinstance(tool, Tool):
            raise PluginError(f"register() takes a rag_core.Tool, got {type(tool).__name__} "
                              f"(from plugin '{plugin}').")
        tool = dataclasses.replace(tool, plugin=plugin or tool.plugin)
        if not tool.name or not tool.name.strip() or any(c.isspace() for c in tool.name):
            raise PluginError(f"Plugin '{tool.plugin}' registered a tool with an invalid name "
                              f"{tool.name!r} (use a short word such as 'music').")
        if not callable(tool.run):
            raise PluginError(f"Plugin '{tool.plugin}' registered tool '{tool.name}' without a "
                              "callable run(state, **options).")
        with self._lock:
            if tool.name in self._tools:
                owner = self._tools[tool.name].plugin
                raise DuplicateRegistrationError.between("tool", tool.name, owner, tool.plugin)
            self._tools[tool.name] = tool

    def remove_plugin(self, plugin: str) -> None:
        with self._lock:
            for name in [n for n, t in self._tools.items() if t.plugin == plugin]:
                del self._tools[name]

    def get(self, name: str) -> Tool:
        """The tool called ``name``; ToolNotFoundError says what is registered and disabled."""
        with self._lock:
            tool = self._tools.get(name)
            known = ", ".join(sorted(self._tools)) or "none"
        if tool is not None:
            return tool
        hint = self.missing_hint() if self.missing_hint else ""
        raise ToolNotFoundError(
            f"Tool '{name}' is not registered (registered tools: {known})."
            + (f" {hint}" if hint else "")
        )

    def tools(self) -> list[Tool]:
        with self._lock:
            return sorted(self._tools.values(), key=lambda t: t.name)
