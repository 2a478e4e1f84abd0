"""Item ids: file-name-safe, unique by construction, and stable when files are added.

An id names the per-item outputs (``coords/<id>.h5``, ``features/<id>.h5``). Ids derived from a
running counter ("a_b", "a_b-1") move when a new file sorts in front, and a resumed run then hands one
file's outputs to another. Here a name that is not kept as it is ("a b.jpg", "a+b.jpg") gets a hash of
its own relative path, an id already given in an earlier run of the same output is kept, and the
remaining clash (same stem, another extension: "a_b.jpg" / "a_b.png") is settled by path order.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def safe_id(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    s = re.sub(r"[^\w.-]+", "_", stem.replace("/", "__").replace("\\", "__")).strip("._")
    return s or "item"


def _plain(rel: str) -> bool:
    """Whether the id keeps the name exactly (only '/' written as '__')."""
    stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    return safe_id(rel) == stem.replace("/", "__")


def _hashed(rel: str) -> str:
    return f"{safe_id(rel)}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def assign_ids(rels: list[tuple[str, str]],
               previous: dict[str, str] | None = None) -> tuple[list[str], list[dict]]:
    """Ids for ``(key, rel)`` pairs (key: absolute path; rel: the name the id is made from).

    Returns the ids in input order and one record per item whose name clashed with another's
    (path, id, and the shared name), for ``id_collisions.csv``.
    """
    previous = previous or {}
    ids: list[str | None] = [None] * len(rels)
    taken: set[str] = set()
    # 1. an id given to this very file by an earlier run of the same output stays
    for i, (key, _) in enumerate(rels):
        old = previous.get(key)
        if old and old not in taken:
            ids[i] = old
            taken.add(old)
    # 2. names kept as they are, in path order; 3. everything else by a hash of its own path
    order = sorted(range(len(rels)), key=lambda i: rels[i][1])
    for i in order:
        if ids[i] is None and _plain(rels[i][1]) and safe_id(rels[i][1]) not in taken:
            ids[i] = safe_id(rels[i][1])
            taken.add(ids[i])
    for i in order:
        if ids[i] is None:
            cand, n = _hashed(rels[i][1]), 1
            while cand in taken:
                n += 1
                cand = f"{_hashed(rels[i][1])}-{n}"
            ids[i] = cand
            taken.add(cand)
    groups: dict[str, list[int]] = {}
    for i, (_, rel) in enumerate(rels):
        groups.setdefault(safe_id(rel), []).append(i)
    records = [{"path": rels[i][0], "id": ids[i], "shared_name": name}
               for name, idx in groups.items() if len(idx) > 1 for i in idx]
    return ids, records  # type: ignore[return-value]


def ids_in_outputs(folder: str | os.PathLike, base: str | os.PathLike) -> dict[str, str]:
    """{absolute source path: id} recorded in the per-item h5 files of an earlier run (even a killed one)."""
    import h5py

    from cytofm.utils.io import resolve_path

    found: dict[str, str] = {}
    for h5 in sorted(Path(folder).glob("*.h5")):
        try:
            with h5py.File(h5, "r") as f:
                src = f.attrs.get("source_path")
        except Exception:
            continue
        if src:
            found.setdefault(os.path.abspath(resolve_path(str(src), base)), h5.stem)
    return found
