"""Small I/O helpers: atomic writes so an interrupted run never leaves a file looking finished."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from cytofm.utils.errors import UserError


class OutputError(UserError):
    """The output folder or file cannot be written; said before any computing starts."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds, with the
    permissions the user's umask gives (:func:`with_user_mode`), whichever library wrote it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(with_user_mode(tmp) if tmp.is_file() else tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be written (by trying: the
    permission bits do not tell for root, read-only mounts or immutable folders)."""
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {p}: is a file, not a folder; give a folder (it is made if missing)")
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise OutputError(f"{option} {p}: {q} is a file, so no folder can be made under it")
    try:
        fd, name = tempfile.mkstemp(dir=q, prefix=".cytofm-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputError(f"{option} {p}: cannot write into {q} ({(e.strerror or str(e)).lower()}); "
                          "choose another folder or make it writable") from None
    return p


def check_writable_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """As :func:`check_writable_dir` for an output file: not a folder, and its folder writable."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{option} {p}: is a folder; give a file name (e.g. {p / 'umap.png'})")
    check_writable_dir(p.parent if str(p.parent) else Path("."), option)
    return p


def with_user_mode(path: str | os.PathLike) -> Path:
    """Give a file the permissions the user's umask asks for (0644 under the usual 022), as any tool's
    plain ``open`` would: some writers (safetensors) create files readable by their owner only, which
    colleagues on a shared disk then cannot load."""
    os.chmod(path, 0o666 & ~_umask())
    return Path(path)


def _umask() -> int:
    """The process's umask, read without setting it where Linux tells it (setting it for a moment, as the
    portable way does, would let a file another thread creates then be writable by all)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest for the moment it is set
    os.umask(mask)
    return mask


def write_csv(path: str | os.PathLike, rows: Iterable[dict], columns: Sequence[str] | None = None) -> Path:
    """Write dict rows atomically; columns default to the union of keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        cols: dict[str, None] = {}
        for r in rows:
            for k in r:
                cols.setdefault(k, None)
        columns = list(cols)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return Path(path)


def json_safe(obj):
    """``obj`` with every NaN or infinite number as None (JSON's null), numpy scalars and arrays as Python
    ones: ``json.dumps`` writes bare ``NaN``, which is not JSON and which strict parsers (jq, browsers,
    other languages) refuse."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def strict_json(obj, indent: int | None = 2, **kwargs) -> str:
    """``obj`` as strict JSON text (NaN and infinities as null, :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(strict_json(obj, indent) + "\n")
    return Path(path)


def nan_from_null(obj):
    """The inverse of :func:`json_safe` for numbers read back: every null as NaN (only for parts of a
    file that hold numbers alone, e.g. a metric's value and interval)."""
    if isinstance(obj, dict):
        return {k: nan_from_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_from_null(v) for v in obj]
    return float("nan") if obj is None else obj


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def portable_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to the output folder ``base`` (POSIX separators), for files that are shared.

    Manifests and reports travel to other machines; an absolute path of this one tells them nothing and
    leaks the user's directory layout. Readers resolve relative paths against the folder of the file
    that holds them (:func:`resolve_path`).
    """
    p = os.path.abspath(path)
    try:
        return Path(os.path.relpath(p, os.path.abspath(base))).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(p).as_posix()


def resolve_path(path: str, base: str | os.PathLike) -> Path:
    """The inverse of :func:`portable_path`: absolute paths as they are, relative ones under ``base``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base) / p


def remove_stale_temporaries(root: str | os.PathLike) -> int:
    """Delete leftovers of :func:`atomic_path` writes that a killed run never renamed into place.

    Call only while holding the folder's lock: then no live writer owns any of them.
    """
    n = 0
    for p in Path(root).rglob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def slug(s: str) -> str:
    """A file-name-safe form of ``s`` (an encoder spec, a task name) for folders that name what they hold."""
    return re.sub(r"[^\w.-]+", "_", s).strip("_")[:80]
