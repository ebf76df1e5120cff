"""Fake plugins for the core tests: real dist-info folders on sys.path, found by entry points."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import rag_core.plugins


class FakePlugins:
    """Installs small plugin modules as distributions; only these (no built-in) are discovered."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.dists: set[str] = set()
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))
        self.real_discover = real = rag_core.plugins.discover
        monkeypatch.setattr(rag_core.plugins, "discover",
                            lambda: [ep for ep in real() if ep.dist and ep.dist.name in self.dists])
        monkeypatch.setattr(rag_core.plugins, "BUILTIN_PLUGINS", {})

    def add(self, name: str, source: str = "", *, version: str = "1.0",
            module: str | None = None) -> str:
        """Install plugin ``name`` (entry point name) whose module holds ``source``."""
        modules = {}
        if module is None:
            module = f"mlxrag_fake_{name}_{uuid.uuid4().hex[:8]}"
            modules[module] = source
        dist = f"mlx-rag-fake-{name}-{uuid.uuid4().hex[:6]}"
        self.install(dist, version, {name: module}, modules)
        return module

    def install(self, dist: str, version: str, entry_points: dict[str, str],
                modules: dict[str, str]) -> None:
        """Write ``modules`` (name -> source) and a dist-info declaring ``entry_points``."""
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[mlx_rag]\n{lines}")
        importlib.invalidate_caches()
        self.dists.add(dist)

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


def tool_plugin(*tools: str, models: tuple[str, ...] = (), command: str | None = None) -> str:
    """Source of a plugin registering echo tools, fake models and optionally a command."""
    lines = ["import click", "from rag_core import ModelSpec, Tool, hookimpl", "",
             "def echo(state, text='', times=1):",
             "    return {'question': state.question, 'text': text * times}", "",
             "@hookimpl", "def register_tools(register):"]
    lines += [f"    register(Tool({t!r}, echo, description='echo'))" for t in tools] or ["  pass"]
    if models:
        lines += ["", "@hookimpl", "def register_models(register):"]
        lines += [f"    register(ModelSpec({m!r}, 'demo', lambda s: {{'src': s}}, size_bytes=10))"
                  for m in models]
    if command:
        lines += ["", "@hookimpl", "def register_commands(cli):",
                  f"    @cli.command({command!r})", "    def cmd():",
                  "        click.echo('hello from the plugin')"]
    return "\n".join(lines) + "\n"
