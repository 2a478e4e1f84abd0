"""The import graph reads from the tree: each stage imports only the stages below it, siblings not each
other, and no module imports itself round a cycle (lazy imports inside functions count too).

Run alone: python -m pytest -q tests/test_layers.py
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "cytofm"
LAYERS = {"utils": 0, "config": 1, "data": 2, "models": 3, "features": 4, "ssl": 4, "mil": 4, "viz": 5, "eval": 6,
          "pipeline": 7, "cli": 8}
"""Stages bottom-up; a stage imports only lower numbers (or itself)."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the cytofm modules it imports (anywhere in the file)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        s = _stage(mod)
        for d in deps:
            t = _stage(d)
            if s is None or t is None or s == t:
                continue
            if LAYERS[t] >= LAYERS[s]:
                bad.append(f"{mod} -> {d} ({s} is layer {LAYERS[s]}, {t} is layer {LAYERS[t]})")
    return sorted(bad)


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_stage_is_known():
    stages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert stages <= set(LAYERS), stages - set(LAYERS)


def test_no_upward_or_sideways_import():
    graph = import_graph()
    assert len(graph) > 80 and sum(map(len, graph.values())) > 200  # the whole package was read
    assert "cytofm.models.encoder" in graph["cytofm.models.zoo"]  # lazy imports inside functions count too
    assert "cytofm.data.shards" in graph["cytofm.data.prepare"]
    assert upward_imports(graph) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_can_fail():
    g = {"cytofm.models.zoo": {"cytofm.ssl.checkpoint"}, "cytofm.ssl.checkpoint": {"cytofm.models.zoo"},
         "cytofm.features.extract": {"cytofm.ssl.backbone"}}
    assert len(upward_imports(g)) == 2  # models -> ssl upward, features -> ssl sideways
    assert cycles(g) == [["cytofm.models.zoo", "cytofm.ssl.checkpoint"]]
