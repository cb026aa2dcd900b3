"""gkit's modules import one way (issue 9, point 1).

Builds the module import graph of the ``gkit`` package with ``ast``: imports
inside functions count (a late import is still a dependency), imports under
``if TYPE_CHECKING:`` do not (they may only name Protocols that a lower layer
defines, which the second test checks). Fails on any cycle and prints it.
Run as a script to print the graph and the layers.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set


PKG = Path(__file__).resolve().parent.parent / "gkit"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: Set[str], *, type_checking: bool) -> Set[str]:
    """The gkit modules ``name`` imports; with ``type_checking``, only those
    under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, guarded)
            return
        if guarded == type_checking:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return {m for m in found if m in modules and m != name}


def import_graph(type_checking: bool = False) -> Dict[str, Set[str]]:
    paths = {module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(paths)
    graph = {name: _imports(name, path, modules, type_checking=type_checking)
             for name, path in paths.items()}
    # gkit/__init__.py only re-exports: edges into it are not layering.
    return {m: deps - {"gkit"} for m, deps in graph.items() if m != "gkit"}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def layers(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Modules by layer: each imports only modules of lower layers."""
    level: Dict[str, int] = {}

    def depth(m: str, seen: frozenset = frozenset()) -> int:
        if m not in level:
            level[m] = 1 + max((depth(d, seen | {m}) for d in graph[m] if d not in seen),
                               default=-1)
        return level[m]

    for m in graph:
        depth(m)
    out: List[List[str]] = [[] for _ in range(max(level.values()) + 1)]
    for m, n in level.items():
        out[n].append(m)
    return [sorted(layer) for layer in out]


def report(found: List[List[str]]) -> str:
    return "\n".join("cycle: " + " <-> ".join(c) for c in found) + \
        f"\n{len(found)} import cycle(s) among {len(import_graph())} modules"


def test_io_layer_has_no_import_cycle():
    """gkit outside gkit/proto: no cycle at all, late imports included."""
    found = [c for c in cycles(import_graph()) if not all(m.startswith("gkit.proto.") for m in c)]
    assert not found, report(found)


def test_whole_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, report(found)


def test_type_checking_imports_name_only_protocols_of_lower_layers():
    """A ``TYPE_CHECKING`` import may only name a Protocol (an interface a
    lower layer defines); anything else would hide a two-way dependency."""
    graph = import_graph()
    guarded = import_graph(type_checking=True)
    bad = []
    for module, targets in guarded.items():
        for target in targets:
            if module in _reachable(graph, target):
                bad.append(f"{module} -> {target} (TYPE_CHECKING, but {target} imports {module})")
    assert not bad, "\n".join(bad)


def _reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen: Set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        for d in graph.get(m, ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


if __name__ == "__main__":
    g = import_graph()
    print(report(cycles(g)))
    for n, layer in enumerate(layers(g)):
        print(f"layer {n}: {' '.join(m[5:] for m in layer)}")
    sys.exit(1 if cycles(g) else 0)
