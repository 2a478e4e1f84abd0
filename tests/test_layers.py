"""The import graph reads from the tree: each stage imports only the stages below it, siblings not each
other, and no module imports itself round a cycle (lazy imports inside functions count too); and no module
reaches into another for a private (``_``-prefixed, not dunder) name.

Run alone: python -m pytest -q tests/test_layers.py
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "cytofm"
LAYERS = {"utils": 0, "config": 1, "data": 2, "models": 3, "features": 4, "ssl": 4, "mil": 4, "viz": 5,
          "eval": 6, "pipeline": 7, "cli": 8}
"""Stages bottom-up; a stage imports only lower numbers (or itself)."""


def _module(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, relative: bool = False):
    """(node, names it imports): a module and each ``module.name`` of a from-import; relative from-imports
    only with ``relative`` (their names are then as written, without the package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (relative or node.level == 0):
            yield node, [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the cytofm modules it imports (anywhere in the file)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for _, targets in imported_names(ast.parse(path.read_text())):
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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything that is not a plain chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def private_imports(pkg: Path = PKG) -> list[str]:
    """Every place a module under ``pkg`` takes a private name from another cytofm module, as
    ``file:line imports _name from module``: ``from cytofm.x import _name`` (relative forms too), and
    ``m._name`` / ``cytofm.x._name`` after ``import cytofm.x as m`` / ``import cytofm.x``."""
    top, base = pkg.name, pkg.parents[1]
    modules = {_module(p, pkg) for p in pkg.rglob("*.py")}
    bad = []
    for path in sorted(pkg.rglob("*.py")):
        me = _module(path, pkg)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        where = path.relative_to(base).as_posix()
        aliases: dict[str, str] = {}  # local name -> the cytofm module it is bound to by ``import``
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    src = ".".join(up + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if src.split(".")[0] != top:
                    continue
                for a in node.names:
                    parts = src.split(".") + [a.name]
                    private = [p for p in parts if _private(p)]
                    if private and src != me:
                        bad.append((where, node.lineno, f"imports {private[0]} from {src}"))
                    if f"{src}.{a.name}" in modules:  # ``from cytofm.data import tiles``: a module
                        aliases[a.asname or a.name] = f"{src}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != top:
                        continue
                    private = [p for p in a.name.split(".") if _private(p)]
                    if private:
                        bad.append((where, node.lineno, f"imports {private[0]} from {a.name}"))
                    if a.asname:
                        aliases[a.asname] = a.name
                    else:
                        aliases[top] = top
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr):
                continue
            chain = _dotted(node.value)
            if chain is None or chain[0] not in aliases:
                continue
            src = ".".join([aliases[chain[0]], *chain[1:]])
            if src != me:
                bad.append((where, node.lineno, f"imports {node.attr} from {src}"))
    return [f"{f}:{line} {what}" for f, line, what in sorted(set(bad))]


def test_every_stage_is_known():
    stages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert stages <= set(LAYERS), stages - set(LAYERS)


def test_no_upward_or_sideways_import():
    graph = import_graph()
    assert len(graph) > 80 and sum(map(len, graph.values())) > 200  # the whole package was read
    assert "cytofm.models.encoder" in graph["cytofm.models.zoo"]  # lazy imports inside functions count too
    assert "cytofm.data.prepare.shards" in graph["cytofm.data.prepare.run"]
    assert upward_imports(graph) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_can_fail():
    g = {"cytofm.models.zoo": {"cytofm.ssl.checkpoint"}, "cytofm.ssl.checkpoint": {"cytofm.models.zoo"},
         "cytofm.features.extract": {"cytofm.ssl.backbone"}}
    assert len(upward_imports(g)) == 2  # models -> ssl upward, features -> ssl sideways
    assert cycles(g) == [["cytofm.models.zoo", "cytofm.ssl.checkpoint"]]


def test_no_private_name_taken_from_another_module():
    assert private_imports() == []


def test_the_private_name_check_can_fail(tmp_path):
    pkg = tmp_path / "src" / "cytofm"
    (pkg / "data").mkdir(parents=True)
    files = {
        "__init__.py": "__version__ = '0'\n_HIDDEN = 1\n",
        "data/__init__.py": "",
        "data/tiles.py": "_GRID = 8\n\ndef _cut():\n    return _GRID\n",
        "data/ok.py": "from cytofm import __version__\nfrom cytofm.data.tiles import _cut as _c\n",  # line 2
        "data/sneaky.py": ("import cytofm.data.tiles as t\nimport cytofm.data.tiles\nfrom . import tiles\n"
                           "from .tiles import _GRID\nfrom cytofm import (\n    _HIDDEN,\n)\n\n"
                           "def f():\n"
                           "    return t._cut(), cytofm.data.tiles._GRID, tiles.__name__, tiles._GRID\n"),
        "data/self.py": "_X = 1\nfrom cytofm.data.self import _X as _Y\n",  # its own private name: fine
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    assert private_imports(pkg) == [
        "src/cytofm/data/ok.py:2 imports _cut from cytofm.data.tiles",
        "src/cytofm/data/sneaky.py:4 imports _GRID from cytofm.data.tiles",
        "src/cytofm/data/sneaky.py:5 imports _HIDDEN from cytofm",
        # cytofm.data.tiles._GRID and tiles._GRID, one line
        "src/cytofm/data/sneaky.py:10 imports _GRID from cytofm.data.tiles",
        "src/cytofm/data/sneaky.py:10 imports _cut from cytofm.data.tiles",
    ]


def cross_test_imports(tests: Path = PKG.parents[1] / "tests") -> list[str]:
    """Test modules importing from a test module (``test_*``) or a conftest, as ``file:line imports module``;
    shared helpers live in tests/helpers.py, shared fixtures in conftest.py files (used by name)."""
    bad = []
    for path in sorted(tests.rglob("*.py")):
        for node, names in imported_names(ast.parse(path.read_text()), relative=True):
            for name in names:
                last = name.split(".")[-1]
                if last == "conftest" or last.startswith("test_"):
                    bad.append(f"{path.relative_to(tests.parent).as_posix()}:{node.lineno} imports {name}")
                    break
    return bad


def test_no_test_module_imports_another_or_a_conftest(tmp_path):
    assert cross_test_imports() == []
    (tmp_path / "tests" / "ssl").mkdir(parents=True)
    (tmp_path / "tests" / "ssl" / "test_a.py").write_text("from tests.ssl.test_b import X\nimport conftest\n"
                                                          "from tests.helpers import smear\n")
    assert cross_test_imports(tmp_path / "tests") == ["tests/ssl/test_a.py:1 imports tests.ssl.test_b",
                                                      "tests/ssl/test_a.py:2 imports conftest"]
