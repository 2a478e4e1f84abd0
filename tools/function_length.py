"""Functions longer than a limit: ``python tools/function_length.py [PATHS...] [--max 60]``.

A function's length is the lines from its first body statement after the docstring to its last line, so a
long signature (a CLI command's option list) and the docstring do not count; nested functions count in
their own right and inside the function that holds them. Prints ``path:line name length`` for each function
over the limit, longest first, and exits 1; prints one OK line and exits 0 when there is none.
Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "src" / "cytofm"


def body_length(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's last line (0: docstring only)."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    return fn.end_lineno - body[0].lineno + 1


def functions(tree: ast.AST):
    """(qualified name, node) for every function and method, nested ones included."""

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _files(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def too_long(paths: list[Path], limit: int) -> list[tuple[str, int, str, int]]:
    """(path, line, name, length) of each function longer than ``limit``, longest first."""
    found = []
    for path in _files(paths):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, fn in functions(tree):
            n = body_length(fn)
            if n > limit:
                found.append((_shown(path), fn.lineno, name, n))
    return sorted(found, key=lambda f: (-f[3], f[0], f[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, help=f"files or folders (default: {_shown(DEFAULT)})")
    ap.add_argument("--max", type=int, default=60, help="longest body allowed, in lines (default: 60)")
    args = ap.parse_args(argv)
    paths = args.paths or [DEFAULT]
    missing = [p for p in paths if not p.exists()]
    if missing:
        ap.error(f"no such path: {', '.join(map(str, missing))}")
    found = too_long(paths, args.max)
    for path, line, name, n in found:
        print(f"{path}:{line} {name} {n}")
    if found:
        print(f"{len(found)} function(s) over {args.max} lines", file=sys.stderr)
        return 1
    print(f"OK: no function body over {args.max} lines in {', '.join(_shown(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
