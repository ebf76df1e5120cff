"""Configuration: one TOML file over defaults that live in code, with each value's origin.

Lookup, first found wins: ``--config FILE``, ``$MLX_RAG_CONFIG``, ``./mlx-rag.toml``, then
``config.toml`` in the user config dir (``$MLX_RAG_HOME`` when set). Every key is checked:
a bad key, type or value raises ConfigError naming the file and the key.
"""

from __future__ import annotations

import copy
import difflib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from rag_core.errors import ConfigError, PipelineError

APP_NAME = "mlx-rag"
LOCAL_CONFIG = "mlx-rag.toml"
USER_CONFIG = "config.toml"
DEFAULT = "default"
GIB = 1024**3


def home_dir() -> Path:
    """Root for user data (store, outputs): ``$MLX_RAG_HOME``, else the platform's data dir."""
    env = os.environ.get("MLX_RAG_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    if os.name == "nt":
        return Path(click.get_app_dir(APP_NAME))
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP_NAME


def user_config_path() -> Path:
    """The user config file: ``$MLX_RAG_HOME/config.toml``, else in the platform's config dir."""
    env = os.environ.get("MLX_RAG_HOME")
    root = Path(env).expanduser() if env else Path(click.get_app_dir(APP_NAME))
    return root / USER_CONFIG


# ---- schema ----------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


@dataclass(frozen=True)
class Field:
    """One fixed config key: its TOML type, default and an optional extra check."""

    type: str  # "str" | "number" | "int" | "bool" | "str_list"
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None

    def problem(self, value: Any) -> str | None:
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[self.type]
        if not ok:
            want = {"str": "a string", "bool": "true or false", "int": "an integer",
                    "number": "a number", "str_list": "an array of strings"}[self.type]
            return f"must be {want}, got {_type_name(value)} ({value!r})"
        return self.check(value) if self.check else None


def _non_negative(value: float) -> str | None:
    return None if value >= 0 and value == value else f"must be >= 0, got {value!r}"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


# Sections with fixed keys. [plugins], [tools.NAME] and [pipelines.NAME] are checked below.
SCHEMA: dict[str, dict[str, Field]] = {
    "models": {
        "memory_budget_gb": Field(
            "number", 0, "GiB that loaded models may use; least recently used ones are "
            "unloaded to stay under it (0 = no limit)", _non_negative),
    },
    "store": {
        "path": Field("str", None, "the document store file (relative to the config "
                      "file's folder); default: store.sqlite3 in the user data dir", _non_empty),
    },
    "embedding": {
        "model": Field("str", "sentence-transformers/all-MiniLM-L6-v2",
                       "embedding model id (kind 'embedding')", _non_empty),
    },
    "llm": {
        "model": Field("str", "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
                       "answering model id (kind 'llm')", _non_empty),
    },
}
SECTIONS = ("plugins", *SCHEMA, "tools", "pipelines")
PIPELINE_KEYS = ("steps", "description")
STEP_RESERVED = ("tool", "name")

DEFAULT_PIPELINES: dict[str, dict[str, Any]] = {
    "ask": {
        "description": "retrieve passages for the question, then answer it with the LLM",
        "steps": [{"tool": "retrieve"}, {"tool": "answer"}],
    },
    "music": {
        "description": "retrieve passages for the question, then turn them into music",
        "steps": [{"tool": "retrieve"}, {"tool": "music", "input": "retrieved"}],
    },
}


class _Checker:
    """Validates a parsed TOML document; every error names the file and the key."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, problem: str) -> ConfigError:
        end = "" if problem.endswith((".", "?", "!")) else "."
        return ConfigError(f"Invalid config in {self.where}: '{key}' {problem}{end}")

    def unknown(self, key: str, name: str, known: list[str],
                what: str = "known here") -> ConfigError:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f". Did you mean '{near[0]}'?" if near else ""
        return self.fail(key, f"is not a known key ({what}: {', '.join(known)}){hint}")

    def table(self, key: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {_type_name(value)}")
        return value

    def check(self, data: dict) -> None:
        for section, value in data.items():
            if section not in SECTIONS:
                raise self.unknown(section, section, list(SECTIONS))
            self.table(section, value)
            if section in SCHEMA:
                self.fixed(section, value)
        self.plugins(data.get("plugins", {}))
        for name, options in data.get("tools", {}).items():
            self.table(f"tools.{name}", options)
        for name, pipeline in data.get("pipelines", {}).items():
            self.pipeline(name, pipeline)

    def fixed(self, section: str, values: dict) -> None:
        fields = SCHEMA[section]
        for key, value in values.items():
            if key not in fields:
                raise self.unknown(f"{section}.{key}", key, list(fields))
            problem = fields[key].problem(value)
            if problem:
                raise self.fail(f"{section}.{key}", problem)

    def plugins(self, values: dict) -> None:
        disabled = values.get("disabled", [])
        problem = Field("str_list", [], "").problem(disabled)
        if problem:
            raise self.fail("plugins.disabled", problem)
        for name, table in values.items():
            if name == "disabled":
                continue
            key = f"plugins.{name}"
            if not isinstance(table, dict):
                raise self.fail(key, f"must be a table such as [plugins.{name}] enabled = false "
                                     f"(or list the plugin in [plugins] disabled)")
            for option, value in table.items():
                if option != "enabled":
                    raise self.unknown(f"{key}.{option}", option, ["enabled"])
                if not isinstance(value, bool):
                    raise self.fail(f"{key}.enabled", f"must be true or false, got {value!r}")
            if table.get("enabled") is True and name in disabled:
                raise self.fail(key, f"says enabled = true but [plugins] disabled lists '{name}'"
                                     "; keep one of the two")

    def pipeline(self, name: str, pipeline: Any) -> None:
        key = f"pipelines.{name}"
        self.table(key, pipeline)
        for option in pipeline:
            if option not in PIPELINE_KEYS:
                raise self.unknown(f"{key}.{option}", option, list(PIPELINE_KEYS))
        if "description" in pipeline and not isinstance(pipeline["description"], str):
            raise self.fail(f"{key}.description", "must be a string")
        try:
            check_steps(pipeline.get("steps"))
        except PipelineError as exc:
            raise self.fail(f"{key}.steps", str(exc)) from None


def check_steps(steps: Any) -> list[dict]:
    """Check the shape of a pipeline's steps: a non-empty list of tables, each naming a tool."""
    if not isinstance(steps, list) or not steps:
        raise PipelineError(
            'must be a non-empty array of steps such as [{tool = "retrieve"}, {tool = "answer"}]'
        )
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise PipelineError(f"step {i} must be a table like {{tool = \"retrieve\"}}, "
                                f"got {_type_name(step)}")
        tool = step.get("tool")
        if not isinstance(tool, str) or not tool.strip():
            raise PipelineError(f"step {i} must name its tool: {{tool = \"NAME\", ...}}")
        if "name" in step and (not isinstance(step["name"], str) or not step["name"].strip()):
            raise PipelineError(f"step {i}: 'name' must be a non-empty string")
    return steps


# ---- the effective config -------------------------------------------------------------------


class Config:
    """The effective configuration: defaults from code overlaid with one file's values."""

    def __init__(self, data: dict | None = None, path: Path | None = None, origin: str = ""):
        data = data or {}
        self.path = Path(path).resolve() if path else None
        self.origin = origin or ("given values" if data else "defaults only")
        where = str(self.path) if self.path else "the given config"
        _Checker(where).check(data)
        source = str(self.path) if self.path else "given values"
        self._values, self._sources = _defaults()
        for section in SCHEMA:
            for key, value in data.get(section, {}).items():
                self._values[section][key] = value
                self._sources[f"{section}.{key}"] = source
        for section in ("plugins", "tools", "pipelines"):
            for name, value in data.get(section, {}).items():
                self._values[section][name] = copy.deepcopy(value)
                self._sources[f"{section}.{name}"] = source
        store = self._values["store"]["path"]
        if store is None:
            self._values["store"]["path"] = str(home_dir() / "store.sqlite3")
        else:
            base = self.path.parent if self.path else Path.cwd()
            self._values["store"]["path"] = str(base / Path(store).expanduser())

    @classmethod
    def from_toml(cls, path: str | os.PathLike, origin: str = "") -> Config:
        """Read and check one TOML file."""
        path = Path(path).expanduser()
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Invalid config in {path}: not valid TOML: {exc}.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None
        return cls(data, path=path, origin=origin or str(path))

    def get(self, key: str, default: Any = None) -> Any:
        """A value by dotted key, e.g. ``"models.memory_budget_gb"`` or ``"tools.music"``."""
        node: Any = self._values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def source(self, key: str) -> str:
        """Where a value came from: the file's path, or "default"."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            found = self._sources.get(".".join(parts[:n]))
            if found:
                return found
        return DEFAULT

    def section(self, name: str) -> dict:
        """A copy of one section, e.g. ``config.section("store")``."""
        return copy.deepcopy(self._values.get(name, {}))

    @property
    def memory_budget_bytes(self) -> int | None:
        gb = self._values["models"]["memory_budget_gb"]
        return int(gb * GIB) if gb else None

    @property
    def store_path(self) -> Path:
        return Path(self._values["store"]["path"])

    def tool_options(self, name: str) -> dict:
        """The free-form ``[tools.NAME]`` options (empty when the section is absent)."""
        return self.get(f"tools.{name}", {})

    @property
    def pipelines(self) -> dict[str, dict]:
        return self.section("pipelines")

    def pipeline_steps(self, name: str) -> list[dict]:
        """The steps of a configured pipeline; PipelineError lists the known ones."""
        pipeline = self._values["pipelines"].get(name)
        if pipeline is None:
            known = ", ".join(sorted(self._values["pipelines"])) or "none"
            where = self.path or user_config_path()
            raise PipelineError(
                f"No pipeline named '{name}' (configured: {known}). Define it in {where}, e.g. "
                f'[pipelines.{name}] steps = [{{tool = "retrieve"}}, {{tool = "answer"}}].'
            )
        return copy.deepcopy(pipeline["steps"])

    def check_tools(self, tools: Mapping[str, tuple[str, ...] | None],
                    all_loaded: bool = True) -> None:
        """Check the ``[tools.NAME]`` sections against the registered tools (``tools``: name ->
        the options it takes, None for any); ConfigError names the file, the section and the
        key, with a did-you-mean.

        A section naming no registered tool is an error when every installed plugin is loaded
        (``all_loaded``) or when it is close to a registered name (a typo); otherwise it may
        belong to a disabled plugin and is left alone.
        """
        for name, options in self._values["tools"].items():
            checker = _Checker(self.source(f"tools.{name}"))
            if name not in tools:
                near = difflib.get_close_matches(name, list(tools), n=1)
                if near or all_loaded:
                    hint = f". Did you mean [tools.{near[0]}]?" if near else ""
                    raise checker.fail(
                        f"tools.{name}", f"names no registered tool (tools: "
                        f"{', '.join(sorted(tools)) or 'none'}; see `mlx-rag plugins list`){hint}")
                continue
            accepted = tools[name]
            for key in options if accepted is not None else ():
                if key not in accepted:
                    raise checker.unknown(f"tools.{name}.{key}", key, list(accepted),
                                          f"the {name} tool's options")

    def disabled_by(self, plugin: str) -> str | None:
        """How the config disables ``plugin`` (with how to undo it), or None if it does not."""
        plugins = self._values["plugins"]
        if plugin in plugins["disabled"]:
            return (f"disabled by [plugins] disabled in {self.source('plugins.disabled')}; "
                    f"remove '{plugin}' from that list to enable it")
        table = plugins.get(plugin)
        if isinstance(table, dict) and table.get("enabled") is False:
            return (f"disabled by [plugins.{plugin}] enabled = false in "
                    f"{self.source(f'plugins.{plugin}')}; set it to true to enable it")
        return None

    def entries(self) -> list[tuple[tuple[str, ...], str, Any, str]]:
        """(table path, key, value, source) for every effective value, in display order."""
        rows = []
        for section in SECTIONS:
            for name, value in self._values[section].items():
                source = self.source(f"{section}.{name}")
                if section in SCHEMA or not isinstance(value, dict):
                    rows.append(((section,), name, value, source))
                else:
                    rows += [((section, name), k, v, source) for k, v in value.items()]
        return rows

    def to_dict(self) -> dict:
        return copy.deepcopy(self._values)


def _defaults() -> tuple[dict, dict]:
    values: dict[str, Any] = {s: {k: f.default for k, f in fields.items()}
                              for s, fields in SCHEMA.items()}
    values["plugins"] = {"disabled": []}
    values["tools"] = {}
    values["pipelines"] = copy.deepcopy(DEFAULT_PIPELINES)
    return values, {}


def find_config_file(path: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The config file to use and why: (path, origin), or (None, ...) when there is none."""
    for given, origin in ((path, "--config"), (os.environ.get("MLX_RAG_CONFIG"), "MLX_RAG_CONFIG")):
        if given:
            file = Path(given).expanduser()
            if not file.is_file():
                problem = "is a directory" if file.is_dir() else "does not exist"
                raise ConfigError(f"Config file {file} (from {origin}) {problem}.")
            return file, origin
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return local, f"./{LOCAL_CONFIG}"
    user = user_config_path()
    if user.is_file():
        return user, "the user config dir"
    return None, f"defaults only (no ./{LOCAL_CONFIG}, no {user})"


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Find the config file (see the module docstring) and return the checked effective config."""
    file, origin = find_config_file(path)
    return Config.from_toml(file, origin=origin) if file else Config(origin=origin)


_lock = threading.Lock()
_current: Config | None = None


def get_config() -> Config:
    """The process-wide config, loaded on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = load_config()
        return _current


def set_config(config: Config | None) -> None:
    """Replace the process-wide config (None: look it up again on next use)."""
    global _current
    with _lock:
        _current = config
