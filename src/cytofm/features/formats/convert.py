"""``cytofm convert``: a cytofm store to TRIDENT/CLAM/STAMP files, and their folders back into a store."""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.features.formats import TOOLS, clam, stamp, trident
from cytofm.features.formats.slides import read_store, write_store
from cytofm.utils.errors import InputError


def _check(tool: str) -> str:
    t = (tool or "").lower()
    if t not in TOOLS:
        raise InputError(f"unknown tool '{tool}'; one of: {', '.join(TOOLS)}")
    return t


def export_store(store: str | os.PathLike, tool: str, out: str | os.PathLike,
                 mpp: float | None = None) -> Path:
    """Write the files ``tool`` reads for every item of a cytofm store; returns the folder to point it at."""
    tool = _check(tool)
    slides = read_store(store)
    if not slides:
        raise InputError(f"{store}: the store has no items")
    out = Path(out)
    if tool == "trident":
        return trident.write(slides, out)
    if tool == "clam":
        return clam.write(slides, out)
    return stamp.write(slides, out, mpp)


def import_folder(folder: str | os.PathLike, tool: str, out: str | os.PathLike, mpp: float | None = None,
                  table: str | os.PathLike | None = None) -> tuple[Path, int]:
    """A cytofm store from ``tool``'s feature folder (``table``: CLAM dataset CSV / STAMP slide table)."""
    tool = _check(tool)
    src = Path(folder)
    if not src.is_dir():
        raise InputError(f"{folder}: no such folder")
    tab = Path(table) if table else None
    if tab is not None and not tab.is_file():
        raise InputError(f"{table}: no such file")
    if tool == "trident":
        slides = trident.read(src, mpp)
    elif tool == "clam":
        slides = clam.read(src, mpp, tab)
    else:
        slides = stamp.read(src, mpp, tab)
    if not slides:
        raise InputError(f"{folder}: no {tool} feature files found")
    return write_store(slides, out), len(slides)
