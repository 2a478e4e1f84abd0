"""``cytofm convert``: a cytofm store to another tool's feature files, and their folders back into a store;
the tools are the entries of ``registry.FEATURE_FORMATS``."""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.features.formats.registry import FEATURE_FORMATS, FeatureFormat
from cytofm.features.formats.slides import read_store, write_store
from cytofm.utils.errors import InputError


def feature_format(tool: str) -> FeatureFormat:
    """The layout of ``tool`` (any case), or the refusal naming the tools there are."""
    t = (tool or "").lower()
    if t not in FEATURE_FORMATS:
        raise InputError(f"unknown tool '{tool}'; one of: {', '.join(FEATURE_FORMATS.names())}")
    return FEATURE_FORMATS.get(t)


def export_store(store: str | os.PathLike, tool: str, out: str | os.PathLike,
                 mpp: float | None = None) -> Path:
    """Write the files ``tool`` reads for every item of a cytofm store; returns the folder to point it at."""
    fmt = feature_format(tool)
    slides = read_store(store)
    if not slides:
        raise InputError(f"{store}: the store has no items")
    return fmt.write(slides, Path(out), mpp)


def import_folder(folder: str | os.PathLike, tool: str, out: str | os.PathLike, mpp: float | None = None,
                  table: str | os.PathLike | None = None) -> tuple[Path, int]:
    """A cytofm store from ``tool``'s feature folder (``table``: CLAM dataset CSV / STAMP slide table)."""
    fmt = feature_format(tool)
    src = Path(folder)
    if not src.is_dir():
        raise InputError(f"{folder}: no such folder")
    tab = Path(table) if table else None
    if tab is not None and not tab.is_file():
        raise InputError(f"{table}: no such file")
    slides = fmt.read(src, mpp, tab)
    if not slides:
        raise InputError(f"{folder}: no {tool.lower()} feature files found")
    return write_store(slides, out), len(slides)
