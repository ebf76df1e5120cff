"""The shared MLX model registry: specs that plugins register, loaded lazily and shared.

``get(id)`` loads a model once (also under concurrent first calls), caches it, and keeps the
loaded models under a memory budget by unloading the least recently used ones.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_core.errors import (
    DuplicateRegistrationError,
    ModelKindError,
    ModelNotFoundError,
    ModelUnavailableError,
    PluginError,
    RagError,
)


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin can load: ``loader(spec.source or spec.id)`` returns the loaded object."""

    id: str
    kind: str  # "music" | "llm" | "embedding" | ...
    loader: Callable[[str], Any]
    aliases: tuple[str, ...] = ()
    size_bytes: int | None = None  # estimated memory when loaded
    description: str = ""
    source: str | None = None  # hub repo id or local dir; defaults to id
    plugin: str = ""  # set by the registry
    allow_patterns: tuple[str, ...] | None = None  # files `models pull` fetches (None: defaults)
    prepare: Callable[[], Any] | None = None  # builds the files locally instead of a download

    @property
    def location(self) -> str:
        """What the loader receives and `models pull`/`rm` act on."""
        return self.source or self.id


@dataclass(frozen=True)
class ModelPattern:
    """A family of sources a plugin can load, e.g. local dirs whose config says model_type=X."""

    name: str
    kind: str
    matches: Callable[[str], bool]
    loader: Callable[[str], Any]
    description: str = ""
    plugin: str = ""


def format_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB'; None -> '?'."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def measure_bytes(obj: Any) -> int:
    """Bytes held by the MLX arrays reachable from ``obj`` (modules, containers, attributes)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    seen: set[int] = set()

    def walk(node: Any, depth: int) -> int:
        if id(node) in seen or depth > 4 or isinstance(node, (str, bytes, int, float, type)):
            return 0
        seen.add(id(node))
        if isinstance(node, mx.array):
            return node.nbytes
        if isinstance(node, nn.Module):
            return sum(walk(a, depth) for _, a in tree_flatten(node.parameters()))
        if isinstance(node, dict):
            return sum(walk(v, depth + 1) for v in node.values())
        if isinstance(node, (list, tuple)):
            return sum(walk(v, depth + 1) for v in node)
        attrs = getattr(node, "__dict__", None)
        return sum(walk(v, depth + 1) for v in attrs.values()) if attrs else 0

    return walk(obj, 0)


def _release(entries: list) -> None:
    """Drop the last references to unloaded models and give their memory back to the system."""
    if not entries:
        return
    entries.clear()
    gc.collect()
    import mlx.core as mx

    mx.clear_cache()


@dataclass
class _Loaded:
    spec: ModelSpec
    model: Any
    size_bytes: int


class ModelRegistry:
    """Model specs by id and alias, plus patterns; loaded models in least-recently-used order."""

    def __init__(self, memory_budget_bytes: int | None = None):
        self.memory_budget_bytes = memory_budget_bytes or None
        self.missing_hint: Callable[[], str] | None = None  # extra text for ModelNotFoundError
        self._specs: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}  # id or alias -> id
        self._patterns: dict[str, ModelPattern] = {}
        self._matched: dict[str, ModelSpec] = {}  # specs made from patterns, by source
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._load_locks: dict[str, threading.Lock] = {}
        self._lock = threading.RLock()

    # ---- registration ----

    def register(self, item: ModelSpec | ModelPattern, plugin: str = "") -> None:
        """Add a spec or pattern; an id, alias or pattern name already taken is an error."""
        if isinstance(item, ModelPattern):
            self._register_pattern(item, plugin)
        elif isinstance(item, ModelSpec):
            self._register_spec(item, plugin)
        else:
            raise PluginError(f"register() takes a ModelSpec or a ModelPattern, got "
                              f"{type(item).__name__} (from plugin '{plugin}').")

    def _register_spec(self, spec: ModelSpec, plugin: str) -> None:
        aliases = (spec.aliases,) if isinstance(spec.aliases, str) else tuple(spec.aliases)
        spec = dataclasses.replace(spec, aliases=aliases, plugin=plugin or spec.plugin)
        names = [spec.id, *spec.aliases]
        if not all(isinstance(n, str) and n.strip() for n in names) or not spec.kind:
            raise PluginError(f"Plugin '{spec.plugin}' registered a model with an empty id, "
                              f"alias or kind: {spec!r}.")
        if not callable(spec.loader):
            raise PluginError(f"Plugin '{spec.plugin}' registered model '{spec.id}' without "
                              "a callable loader.")
        with self._lock:
            for name in names:
                if name in self._names:
                    owner = self._specs[self._names[name]].plugin
                    what = "model id" if name == spec.id else "model alias"
                    raise DuplicateRegistrationError.between(what, name, owner, spec.plugin)
            if len(set(names)) != len(names):
                raise DuplicateRegistrationError.between("model id", spec.id, spec.plugin,
                                                         spec.plugin)
            self._specs[spec.id] = spec
            self._names.update(dict.fromkeys(names, spec.id))

    def _register_pattern(self, pattern: ModelPattern, plugin: str) -> None:
        pattern = dataclasses.replace(pattern, plugin=plugin or pattern.plugin)
        if not callable(pattern.matches) or not callable(pattern.loader):
            raise PluginError(f"Plugin '{pattern.plugin}' registered model pattern "
                              f"'{pattern.name}' without callable matches/loader.")
        with self._lock:
            if pattern.name in self._patterns:
                owner = self._patterns[pattern.name].plugin
                raise DuplicateRegistrationError.between("model pattern", pattern.name, owner,
                                                         pattern.plugin)
            self._patterns[pattern.name] = pattern

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (used when a plugin fails half way)."""
        with self._lock:
            for spec in [s for s in self._specs.values() if s.plugin == plugin]:
                self.unload(spec.id)
                del self._specs[spec.id]
                for name in (spec.id, *spec.aliases):
                    self._names.pop(name, None)
            for name in [n for n, p in self._patterns.items() if p.plugin == plugin]:
                del self._patterns[name]

    # ---- lookup ----

    def spec(self, model_id: str, kind: str | None = None) -> ModelSpec:
        """The spec for an id, alias, or a source that a registered pattern matches; with
        ``kind``, one of that kind (``ModelKindError`` names the kind it is instead)."""
        spec = self._find(model_id)
        if kind is not None and spec.kind != kind:
            raise ModelKindError(
                f"Model '{model_id}' is of kind '{spec.kind}', but kind '{kind}' is needed here: "
                f"choose one from `mlx-rag models list --kind {kind}`."
            )
        return spec

    def _find(self, model_id: str) -> ModelSpec:
        with self._lock:
            if model_id in self._names:
                return self._specs[self._names[model_id]]
            path = Path(model_id).expanduser()
            source = str(path.resolve()) if path.is_dir() else model_id
            if source in self._matched:
                return self._matched[source]
            patterns = list(self._patterns.values())
        for pattern in patterns:
            try:
                matched = pattern.matches(source)
            except (OSError, ValueError):
                matched = False
            if matched:
                spec = ModelSpec(id=source, kind=pattern.kind, loader=pattern.loader,
                                 description=pattern.description, plugin=pattern.plugin)
                with self._lock:
                    return self._matched.setdefault(source, spec)
        raise ModelNotFoundError(self._not_found(model_id, path.is_dir()))

    def _not_found(self, model_id: str, is_dir: bool) -> str:
        known = ", ".join(f"{s.id} ({s.kind})" for s in self.specs()) or "none"
        lines = [f"Unknown model '{model_id}'."]
        if is_dir:
            lines.append("It is a local directory, but no registered pattern recognises it.")
        lines.append(f"Known models: {known}.")
        if self._patterns:
            lines.append("Loadable patterns: " + "; ".join(
                f"{p.name} ({p.kind}): {p.description or 'no description'}"
                for p in self._patterns.values()) + ".")
        hint = self.missing_hint() if self.missing_hint else ""
        if hint:
            lines.append(hint)
        lines.append("See `mlx-rag models list`.")
        return " ".join(lines)

    def specs(self, kind: str | None = None) -> list[ModelSpec]:
        """Registered specs (optionally of one kind), sorted by kind and id."""
        with self._lock:
            specs = list(self._specs.values())
        return sorted((s for s in specs if kind in (None, s.kind)), key=lambda s: (s.kind, s.id))

    def patterns(self, kind: str | None = None) -> list[ModelPattern]:
        with self._lock:
            return [p for p in self._patterns.values() if kind in (None, p.kind)]

    # ---- loading ----

    def get(self, model_id: str, kind: str | None = None) -> Any:
        """The loaded model: loaded on first use (once, even from many threads), then cached.

        ``kind`` ("music", "llm", ...) makes sure it is a model of that kind before anything
        loads: ``get_registry().get(id, kind="music")``.
        """
        spec = self.spec(model_id, kind)
        with self._lock:
            hit = self._touch(spec.id)
            if hit is not None:
                return hit.model
            load_lock = self._load_locks.setdefault(spec.id, threading.Lock())
        with load_lock:
            with self._lock:
                hit = self._touch(spec.id)
                if hit is not None:
                    return hit.model
                self._check_fits(spec)
                evicted = self._evict(self._room_for(spec.size_bytes or 0), keep=spec.id)
            _release(evicted)
            model = self._load(spec)
            size = measure_bytes(model) or spec.size_bytes or 0
            with self._lock:
                self._loaded[spec.id] = _Loaded(spec, model, size)
                evicted = self._evict(self.memory_budget_bytes, keep=spec.id)
            _release(evicted)
            return model

    def _touch(self, model_id: str) -> _Loaded | None:
        entry = self._loaded.get(model_id)
        if entry is not None:
            self._loaded.move_to_end(model_id)
        return entry

    def _check_fits(self, spec: ModelSpec) -> None:
        budget = self.memory_budget_bytes
        if budget and spec.size_bytes and spec.size_bytes > budget:
            raise ModelUnavailableError(
                f"Model '{spec.id}' needs about {format_bytes(spec.size_bytes)}, more than the "
                f"memory budget of {format_bytes(budget)}. Raise [models] memory_budget_gb in "
                "the config (0 means no limit) or use a smaller model."
            )

    def _room_for(self, size: int) -> int | None:
        budget = self.memory_budget_bytes
        return None if budget is None else max(budget - size, 0)

    def _evict(self, limit: int | None, keep: str) -> list[_Loaded]:
        """Unload least recently used models (never ``keep``) until the rest fit in ``limit``."""
        evicted: list[_Loaded] = []
        if limit is None:
            return evicted
        while self.used_bytes > limit:
            victim = next((k for k in self._loaded if k != keep), None)
            if victim is None:
                break
            evicted.append(self._loaded.pop(victim))
        return evicted

    @staticmethod
    def _load(spec: ModelSpec) -> Any:
        try:
            return spec.loader(spec.location)
        except (RagError, ValueError):
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"Could not load model '{spec.id}' (from plugin '{spec.plugin}'): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def unload(self, model_id: str) -> bool:
        """Drop a loaded model and free its MLX memory; False if it was not loaded."""
        with self._lock:
            name = self._names.get(model_id, model_id)
            if name not in self._loaded:
                path = Path(model_id).expanduser()
                name = str(path.resolve()) if path.is_dir() else name
            evicted = [self._loaded.pop(name)] if name in self._loaded else []
        if not evicted:
            return False
        _release(evicted)
        return True

    def unload_all(self) -> None:
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        _release(entries)

    @property
    def used_bytes(self) -> int:
        """Estimated bytes held by the loaded models."""
        with self._lock:
            return sum(e.size_bytes for e in self._loaded.values())

    def loaded(self) -> list[tuple[ModelSpec, int]]:
        """(spec, size in bytes) of the loaded models, least recently used first."""
        with self._lock:
            return [(e.spec, e.size_bytes) for e in self._loaded.values()]

    def is_loaded(self, model_id: str) -> bool:
        with self._lock:
            return self._names.get(model_id, model_id) in self._loaded
