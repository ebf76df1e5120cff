"""No import circles in packages/*/src: every import counts, at module level, inside a
function or under ``if TYPE_CHECKING:``, since each says that one module needs the other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "musicgen.plugin"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every package under ``root``/packages/*/src."""
    found = {}
    for src in sorted(root.glob("packages/*/src")):
        for file in src.rglob("*.py"):
            parts = list(file.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = file
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports (``from a import b`` is a.b if that is a
    module, else a)."""
    files = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, file in files.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets = targets or [base]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def in_plugin(module: str) -> bool:
    return module == PLUGIN or module.startswith(PLUGIN + ".")


def test_no_import_circles():
    graph = import_graph(ROOT)
    assert {"musicgen.model", "musicgen.plugin.tool", "rag_core.registry"} <= set(graph)
    assert circles(graph) == []


def test_the_layers_point_one_way():
    graph = import_graph(ROOT)
    for module, targets in graph.items():
        if module.startswith("rag_core"):
            assert not any(t.startswith("musicgen") for t in targets), module
        elif not in_plugin(module):  # the MusicGen library never reaches into its plugin
            assert not any(in_plugin(t) for t in targets), module
        elif module != PLUGIN:  # the plugin's modules never import the one that registers
            assert PLUGIN not in targets, module


def test_musicgen_uses_only_rag_cores_top_level():
    """rag_core's top level is its API for plugins: musicgen imports nothing below it."""
    graph = import_graph(ROOT)
    for module, targets in graph.items():
        if module.startswith("musicgen"):
            deep = sorted(t for t in targets if t.startswith("rag_core."))
            assert not deep, f"{module} imports {deep}"


def test_type_checking_and_function_imports_count(tmp_path):
    package = tmp_path / "packages" / "demo" / "src" / "demo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo.b import B\n"
    )
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "c.py").write_text("import demo.a\n")
    graph = import_graph(tmp_path)
    assert graph["demo.a"] == {"demo.b"} and graph["demo.b"] == {"demo.a"}
    assert circles(graph) == [["demo.a", "demo.b"]]
