"""The shared model registry: laziness, aliases and patterns, thread-safe single load,
LRU eviction under a memory budget, and memory really freed on unload."""

from __future__ import annotations

import gc
import json
import threading
import time

import mlx.core as mx
import mlx.nn as nn
import pytest
from rag_core import (
    ModelKindError,
    ModelNotFoundError,
    ModelPattern,
    ModelRegistry,
    ModelSpec,
    ModelUnavailableError,
    PluginError,
)
from rag_core.registry import measure_bytes

MIB = 1024**2


class CountingLoader:
    """A loader that records its calls and returns a fresh object per call."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, source: str) -> dict:
        with self._lock:
            self.calls.append(source)
        time.sleep(self.delay)
        return {"source": source}


def test_get_is_lazy_and_cached():
    loader = CountingLoader()
    registry = ModelRegistry()
    registry.register(ModelSpec("org/model", "llm", loader, aliases=("small",),
                                source="/weights/here"), plugin="p")
    assert loader.calls == [] and not registry.is_loaded("org/model")
    first = registry.get("small")
    assert first == {"source": "/weights/here"}  # the loader gets spec.source
    assert registry.get("org/model") is first and loader.calls == ["/weights/here"]
    assert [s.id for s, _ in registry.loaded()] == ["org/model"]


def test_loader_gets_the_id_when_no_source():
    loader = CountingLoader()
    registry = ModelRegistry()
    registry.register(ModelSpec("org/model", "llm", loader))
    registry.get("org/model")
    assert loader.calls == ["org/model"]


def test_concurrent_first_calls_load_once():
    loader = CountingLoader(delay=0.05)
    registry = ModelRegistry()
    registry.register(ModelSpec("org/slow", "llm", loader))
    barrier = threading.Barrier(16)
    results = []

    def worker():
        barrier.wait()
        results.append(registry.get("org/slow"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loader.calls) == 1
    assert len(results) == 16 and all(r is results[0] for r in results)


def test_unknown_id_lists_known_ids_kinds_and_patterns():
    registry = ModelRegistry()
    registry.register(ModelSpec("org/music", "music", CountingLoader()))
    registry.register(ModelSpec("org/embed", "embedding", CountingLoader()))
    registry.register(ModelPattern("demo-dirs", "music", lambda s: False, CountingLoader(),
                                   description="folders with model_type demo"))
    registry.missing_hint = lambda: "These plugins are disabled: musicgen."
    with pytest.raises(ModelNotFoundError) as info:
        registry.get("org/nope")
    message = str(info.value)
    assert "Unknown model 'org/nope'" in message
    assert "org/music (music)" in message and "org/embed (embedding)" in message
    assert "demo-dirs (music): folders with model_type demo" in message
    assert "disabled: musicgen" in message


def test_pattern_loads_matching_local_directories(tmp_path):
    loader = CountingLoader()
    registry = ModelRegistry()

    def is_demo_dir(source: str) -> bool:
        config = tmp_path.joinpath(source, "config.json")
        return config.is_file() and json.loads(config.read_text()).get("model_type") == "demo"

    registry.register(ModelPattern("demo-dirs", "music", is_demo_dir, loader), plugin="demo")
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "demo"}')
    other = tmp_path / "other"
    other.mkdir()
    spec = registry.spec(str(model_dir))
    assert (spec.kind, spec.plugin, spec.id) == ("music", "demo", str(model_dir.resolve()))
    assert registry.get(str(model_dir)) is registry.get(str(model_dir / ".." / "ckpt"))
    assert loader.calls == [str(model_dir.resolve())]
    with pytest.raises(ModelNotFoundError, match="local directory, but no registered pattern"):
        registry.spec(str(other))
    assert registry.unload(str(model_dir)) is True


def test_loader_failure_is_a_clear_error_and_not_cached():
    attempts = []

    def flaky(source):
        attempts.append(source)
        if len(attempts) == 1:
            raise OSError("disk on fire")
        return "ok"

    registry = ModelRegistry()
    registry.register(ModelSpec("org/flaky", "llm", flaky), plugin="flakes")
    with pytest.raises(ModelUnavailableError, match=r"'org/flaky' \(from plugin 'flakes'\).*"
                                                    "disk on fire"):
        registry.get("org/flaky")
    assert registry.get("org/flaky") == "ok" and len(attempts) == 2


def test_lru_eviction_under_budget():
    loader = CountingLoader()
    registry = ModelRegistry(memory_budget_bytes=250 * MIB)
    for name in "abc":
        registry.register(ModelSpec(f"m/{name}", "llm", loader, size_bytes=100 * MIB))
    registry.get("m/a")
    registry.get("m/b")
    registry.get("m/a")  # now b is the least recently used
    registry.get("m/c")
    assert [s.id for s, _ in registry.loaded()] == ["m/a", "m/c"]
    assert registry.used_bytes == 200 * MIB
    registry.get("m/b")  # evicts a, the least recently used now
    assert [s.id for s, _ in registry.loaded()] == ["m/c", "m/b"]
    assert loader.calls == ["m/a", "m/b", "m/c", "m/b"]


def test_model_larger_than_budget_is_refused_before_loading():
    loader = CountingLoader()
    registry = ModelRegistry(memory_budget_bytes=50 * MIB)
    registry.register(ModelSpec("m/big", "llm", loader, size_bytes=100 * MIB))
    with pytest.raises(ModelUnavailableError, match="memory_budget_gb"):
        registry.get("m/big")
    assert loader.calls == []


def test_measured_size_replaces_the_estimate_for_eviction():
    def load(source):
        return nn.Linear(1024, 1024)  # 4 MiB of weights + bias

    registry = ModelRegistry(memory_budget_bytes=6 * MIB)
    registry.register(ModelSpec("m/x", "llm", load, size_bytes=1))
    registry.register(ModelSpec("m/y", "llm", load, size_bytes=1))
    registry.get("m/x")
    assert registry.loaded()[0][1] == (1024 * 1024 + 1024) * 4
    registry.get("m/y")  # both fit by estimate, not by measurement: x goes
    assert [s.id for s, _ in registry.loaded()] == ["m/y"]


def test_measure_bytes_walks_modules_containers_and_attributes():
    class Holder:
        def __init__(self):
            self.model = nn.Linear(8, 8, bias=False)
            self.extra = [mx.zeros((4,)), {"w": mx.zeros((2, 2))}]
            self.shared = self.model.weight  # counted once

    assert measure_bytes(Holder()) == (64 + 4 + 4) * 4
    assert measure_bytes("not a model") == 0


def test_unload_frees_mlx_memory():
    def load(source):
        weights = mx.random.normal((16 * MIB // 4,))  # 16 MiB
        mx.eval(weights)
        return {"weights": weights}

    registry = ModelRegistry()
    registry.register(ModelSpec("m/heavy", "llm", load))
    gc.collect()
    mx.clear_cache()
    before = mx.get_active_memory()
    registry.get("m/heavy")
    assert mx.get_active_memory() - before >= 16 * MIB
    assert registry.loaded()[0][1] == 16 * MIB
    assert registry.unload("m/heavy") is True
    assert mx.get_active_memory() - before < MIB
    assert mx.get_cache_memory() < MIB
    assert registry.unload("m/heavy") is False


def test_eviction_frees_mlx_memory():
    def load(source):
        weights = mx.ones((8 * MIB // 4,))
        mx.eval(weights)
        return weights

    registry = ModelRegistry(memory_budget_bytes=12 * MIB)
    registry.register(ModelSpec("m/one", "llm", load))
    registry.register(ModelSpec("m/two", "llm", load))
    gc.collect()
    mx.clear_cache()
    before = mx.get_active_memory()
    registry.get("m/one")
    registry.get("m/two")
    assert [s.id for s, _ in registry.loaded()] == ["m/two"]
    assert mx.get_active_memory() - before < 9 * MIB


def test_get_and_spec_check_the_kind_before_loading():
    loader = CountingLoader()
    registry = ModelRegistry()
    registry.register(ModelSpec("org/llm", "llm", loader, aliases=("chat",)))
    assert registry.get("chat", kind="llm") == {"source": "org/llm"}
    registry.unload("org/llm")
    with pytest.raises(ModelKindError, match="Model 'chat' is of kind 'llm', but kind 'music' "
                       r"is needed here: choose one from `mlx-rag models list --kind music`"):
        registry.get("chat", kind="music")
    assert loader.calls == ["org/llm"] and not registry.is_loaded("org/llm")
    with pytest.raises(ModelNotFoundError):  # a ModelKindError is one
        registry.spec("chat", kind="embedding")
    assert registry.spec("chat", kind="llm").id == "org/llm"
    with pytest.raises(ModelNotFoundError, match="Unknown model 'nope'"):
        registry.get("nope", kind="llm")


def test_specs_filter_and_sort():
    registry = ModelRegistry()
    registry.register(ModelSpec("z/llm", "llm", CountingLoader()))
    registry.register(ModelSpec("a/music", "music", CountingLoader()))
    registry.register(ModelSpec("a/llm", "llm", CountingLoader()))
    assert [s.id for s in registry.specs()] == ["a/llm", "z/llm", "a/music"]
    assert [s.id for s in registry.specs("music")] == ["a/music"]


def test_bad_registrations_are_plugin_errors():
    registry = ModelRegistry()
    with pytest.raises(PluginError, match="ModelSpec or a ModelPattern"):
        registry.register({"id": "x"}, plugin="p")
    with pytest.raises(PluginError, match="callable loader"):
        registry.register(ModelSpec("x/y", "llm", "not callable"), plugin="p")

