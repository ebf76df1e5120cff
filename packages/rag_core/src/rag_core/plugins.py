"""The plugin host: discovers plugins, loads the enabled ones, and records what each registered.

Plugins are entry points in the group ``mlx_rag`` (plugin name = entry point name) plus
rag_core's own ``rag_core.builtin`` (name ``rag_core``), which can be turned off like any other.
A plugin that fails to import, or whose hook raises, is reported as broken and skipped; what it
had registered is removed again, so a plugin is either fully loaded or not at all.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib.metadata import EntryPoint, entry_points, version
from typing import Any

import click
import pluggy

from rag_core import hookspecs
from rag_core.config import Config, get_config, set_config
from rag_core.errors import DuplicateRegistrationError, ModelNotFoundError, PluginError
from rag_core.jobs import JobQueue
from rag_core.registry import ModelPattern, ModelRegistry
from rag_core.server.routes import RouteTable
from rag_core.timings import mark_phase
from rag_core.tools import Tool, ToolRegistry

ENTRY_POINT_GROUP = "mlx_rag"
BUILTIN_PLUGINS = {"rag_core": "rag_core.builtin"}  # name -> module, loaded before entry points
HOOKS = ("register_models", "register_tools", "register_loaders", "register_commands",
         "register_routes")
KINDS = ("models", "patterns", "tools", "commands", "loaders", "routes")  # a record's lists


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1, true, yes or on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _core_version() -> str:
    try:
        return version("rag-core")
    except Exception:
        return "unknown"


@dataclass
class PluginRecord:
    """What `mlx-rag plugins list` shows for one plugin."""

    name: str
    version: str
    module: str
    status: str = "enabled"  # enabled | disabled | broken
    error: str = ""  # why it is broken, or how it is disabled and how to enable it
    builtin: bool = False
    models: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    loaders: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # "POST /api/x", "page /plugins/p/x.js"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DocumentLoader:
    """A ``register_loaders`` registration: ``load(path) -> str`` for files with these suffixes."""

    suffixes: tuple[str, ...]
    load: Callable[..., str]
    plugin: str = ""


@dataclass
class _Candidate:
    name: str
    module: str
    version: str
    load: Callable[[], Any]
    builtin: bool = False


def discover() -> list[EntryPoint]:
    """The installed ``mlx_rag`` entry points, sorted by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _candidates() -> list[_Candidate]:
    found = [
        _Candidate(name, module, _core_version(), lambda m=module: importlib.import_module(m),
                   builtin=True)
        for name, module in BUILTIN_PLUGINS.items()
    ]
    for ep in discover():
        dist = getattr(ep, "dist", None)
        found.append(_Candidate(ep.name, ep.value, dist.version if dist else "unknown", ep.load))
    return found


class PluginHost:
    """One plugin manager, its records, and the registries the enabled plugins filled."""

    def __init__(self, config: Config, *, warn: Callable[[str], None] | None = None):
        self.config = config
        self.strict = env_flag("MLX_RAG_STRICT_PLUGINS")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = ModelRegistry(config.memory_budget_bytes)
        self.tools = ToolRegistry()
        self.routes = RouteTable()
        self.jobs = JobQueue()
        self.loaders: dict[str, DocumentLoader] = {}
        self.commands: dict[str, click.Command] = {}
        self.command_owners: dict[str, str] = {}
        self.records: dict[str, PluginRecord] = {}
        self.warnings: list[str] = []
        self._warn = warn or (lambda message: print(message, file=sys.stderr))
        self.registry.missing_hint = self.tools.missing_hint = self.missing_hint

    def load(self) -> PluginHost:
        """Discover and load every enabled plugin (called once, by get_host)."""
        only = os.environ.get("MLX_RAG_LOAD_PLUGINS")
        candidates = _candidates()
        for candidate in candidates:
            self._load_one(candidate, only)
        if only:
            known = {c.name for c in candidates}
            for name in sorted({n.strip() for n in only.split(",") if n.strip()} - known):
                self.warn(f"Warning: MLX_RAG_LOAD_PLUGINS names '{name}', which is not "
                          f"installed (installed: {', '.join(sorted(known)) or 'none'}).")
        self.check_config()
        mark_phase("plugins")
        return self

    def check_config(self) -> None:
        """Check the config's ``[tools.NAME]`` sections against the tools the plugins
        registered (ConfigError names the file, section and key)."""
        tools = {tool.name: tool.option_names() for tool in self.tools.tools()}
        all_loaded = all(r.status == "enabled" for r in self.records.values())
        self.config.check_tools(tools, all_loaded)

    def disabled_command_owner(self, command: str) -> PluginRecord | None:
        """The disabled plugin that would add ``command``, if any.

        Only for error messages: each disabled plugin's module is imported and its
        ``register_commands`` hook called on a throwaway group; nothing is registered here.
        """
        for candidate in _candidates():
            record = self.records.get(candidate.name)
            if record is None or record.status != "disabled":
                continue
            group = click.Group(candidate.name)
            try:
                probe = pluggy.PluginManager(hookspecs.PROJECT_NAME)
                probe.add_hookspecs(hookspecs)
                probe.register(candidate.load(), name=candidate.name)
                probe.hook.register_commands(cli=group)
            except Exception:
                continue
            if command in group.commands:
                return record
        return None

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._warn(message)

    def _disabled_by(self, name: str, only: str | None) -> str | None:
        if only is not None:
            wanted = {n.strip() for n in only.split(",") if n.strip()}
            if name in wanted:
                return None
            return (f"not listed in MLX_RAG_LOAD_PLUGINS={only!r}; add it there, or unset "
                    "MLX_RAG_LOAD_PLUGINS to load all installed plugins")
        return self.config.disabled_by(name)

    def _load_one(self, candidate: _Candidate, only: str | None) -> None:
        name = candidate.name
        record = PluginRecord(name, candidate.version, candidate.module, builtin=candidate.builtin)
        if name in self.records:
            first = self.records[name]
            record.status = "broken"
            record.error = (f"another plugin is already called '{name}' ({first.module}); "
                            "uninstall one of them")
            self.records[f"{name} ({candidate.module})"] = record
            self.warn(f"Warning: plugin '{name}' from {candidate.module} was skipped: "
                      f"{record.error}.")
            return
        self.records[name] = record
        reason = self._disabled_by(name, only)
        if reason:
            record.status, record.error = "disabled", reason
            return
        module = None
        try:
            module = candidate.load()
            self.pm.register(module, name=name)
            self._check_hooks(module, name)
            self._call_hooks(record)
        except Exception as exc:
            self._forget(name, module)
            if self.strict:
                raise
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            record.status, record.error = "broken", message
            for kind in KINDS:
                getattr(record, kind).clear()
            self.warn(f"Warning: plugin '{name}' is broken and was not loaded: {message} "
                      "(see `mlx-rag plugins list`; MLX_RAG_STRICT_PLUGINS=1 raises instead).")

    def _check_hooks(self, module: Any, name: str) -> None:
        for caller in self.pm.get_hookcallers(module) or []:
            if caller.spec is None:
                raise PluginError(f"Plugin '{name}' implements unknown hook '{caller.name}' "
                                  f"(known hooks: {', '.join(HOOKS)}).")

    def _call(self, hook: str, name: str, **kwargs: Any) -> None:
        """Call plugin ``name``'s implementations of ``hook`` (with the arguments they take)."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == name:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})

    def _call_hooks(self, record: PluginRecord) -> None:
        name = record.name

        def register_model(item: Any) -> None:
            self.registry.register(item, plugin=name)
            kind = record.patterns if isinstance(item, ModelPattern) else record.models
            kind.append(item.name if isinstance(item, ModelPattern) else item.id)

        def register_tool(tool: Tool) -> None:
            self.tools.register(tool, plugin=name)
            record.tools.append(tool.name)

        def register_loader(suffixes: str | tuple[str, ...], load: Callable[..., str]) -> None:
            loader = self._make_loader(suffixes, load, name)
            for suffix in loader.suffixes:
                if suffix in self.loaders:
                    owner = self.loaders[suffix].plugin
                    raise DuplicateRegistrationError.between("document loader for", suffix,
                                                             owner, name)
            self.loaders.update(dict.fromkeys(loader.suffixes, loader))
            record.loaders.extend(loader.suffixes)

        self._call("register_models", name, register=register_model)
        self._call("register_tools", name, register=register_tool)
        self._call("register_loaders", name, register=register_loader)
        self._call("register_routes", name, register=lambda item: record.routes.extend(
            self.routes.register(item, plugin=name)))
        group = click.Group(name)
        self._call("register_commands", name, cli=group)
        for command in group.commands:
            if command in self.commands:
                owner = self.command_owners[command]
                raise DuplicateRegistrationError.between("command", command, owner, name)
        self.commands.update(group.commands)
        self.command_owners.update(dict.fromkeys(group.commands, name))
        record.commands.extend(group.commands)

    @staticmethod
    def _make_loader(suffixes: Any, load: Any, plugin: str) -> DocumentLoader:
        suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
        if not suffixes or not all(isinstance(s, str) and s.startswith(".") for s in suffixes):
            raise PluginError(f"Plugin '{plugin}' registered a loader with bad suffixes "
                              f"{suffixes!r}; use a tuple such as ('.pdf',).")
        if not callable(load):
            raise PluginError(f"Plugin '{plugin}' registered a loader that is not callable.")
        return DocumentLoader(tuple(s.lower() for s in suffixes), load, plugin)

    def _forget(self, name: str, module: Any) -> None:
        """Undo a partly loaded plugin's registrations."""
        self.registry.remove_plugin(name)
        self.tools.remove_plugin(name)
        self.routes.remove_plugin(name)
        self.loaders = {s: x for s, x in self.loaders.items() if x.plugin != name}
        for command in [c for c, owner in self.command_owners.items() if owner == name]:
            del self.commands[command], self.command_owners[command]
        if module is not None and self.pm.is_registered(module):
            self.pm.unregister(module)

    def missing_hint(self) -> str:
        """Which plugins are disabled or broken, and how to enable them (for not-found errors)."""
        parts = []
        disabled = [r for r in self.records.values() if r.status == "disabled"]
        broken = [r for r in self.records.values() if r.status == "broken"]
        if disabled:
            parts.append("These plugins are disabled: " + "; ".join(
                f"{r.name} ({r.error})" for r in disabled) + ".")
        if broken:
            parts.append("These plugins failed to load: " + ", ".join(r.name for r in broken)
                         + " (see `mlx-rag plugins list`).")
        return " ".join(parts)

    def close(self) -> None:
        self.jobs.shutdown()
        self.registry.unload_all()


_lock = threading.RLock()
_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host for the current config, loaded on first use."""
    global _host
    config = get_config()
    with _lock:
        if _host is None or _host.config is not config:
            old, _host = _host, PluginHost(config)
            if old is not None:
                old.close()
            try:
                _host.load()
            except BaseException:
                _host = None
                raise
        return _host


def reset() -> None:
    """Forget the process-wide host and config (unloading models); the next use reloads both."""
    global _host
    with _lock:
        old, _host = _host, None
    set_config(None)
    if old is not None:
        old.close()


def get_registry() -> ModelRegistry:
    """The shared model registry, filled by the enabled plugins."""
    return get_host().registry


def get_jobs() -> JobQueue:
    """The process-wide job queue (see rag_core.jobs): background work, one job per model."""
    return get_host().jobs


def model_lane(model_id: str, *, missing_ok: bool = False) -> AbstractContextManager:
    """Hold while generating with a model (id, alias or folder): one generation at a time per
    model, taking turns with the jobs queued under its id. ``missing_ok=True``: a model no
    plugin knows has no lane to wait for (nothing is held), instead of ModelNotFoundError."""
    host = get_host()
    try:
        spec = host.registry.spec(model_id)
    except ModelNotFoundError:
        if missing_ok:
            return nullcontext()
        raise
    return host.jobs.lane(spec.id)


def get_tool(name: str) -> Tool:
    """The tool called ``name``; ToolNotFoundError says which plugins are disabled."""
    return get_host().tools.get(name)


def get_loaders() -> dict[str, DocumentLoader]:
    """Document loaders registered by plugins, by lower-case file suffix ('.pdf')."""
    return dict(get_host().loaders)
