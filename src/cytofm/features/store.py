"""The feature store: one h5 per source item plus ``manifest.csv``.

Each ``features/<id>.h5`` holds ``features`` (N, D) float32 and ``coords`` (N, 2) int64 (level-0 top-left
x, y; (0, 0) for whole images), with attributes naming the encoder, a hash of its weights, the patch
size, resolution and cytofm version; ``coords`` carries the patch geometry TRIDENT and CLAM read
(:mod:`cytofm.features.formats.geometry`). ``cytofm convert`` writes the other tools' layouts.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from cytofm.features.formats.geometry import COORDS_ATTRS
from cytofm.utils.io import atomic_path, read_csv


def write_item(path: str | os.PathLike, features: np.ndarray, coords: np.ndarray, attrs: dict) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features.astype(np.float32))
            c = f.create_dataset("coords", data=coords.astype(np.int64))
            for k, v in attrs.items():
                f.attrs[k] = v if v is not None else ""
                if k in COORDS_ATTRS:
                    c.attrs[k] = v


def read_item(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        return f["features"][:], f["coords"][:], dict(f.attrs)


def item_attrs(path: str | os.PathLike) -> dict | None:
    try:
        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except Exception:
        return None


def load_store(root: str | os.PathLike) -> list[dict]:
    """Manifest rows of a feature store, each with an absolute ``h5`` path."""
    root = Path(root)
    m = root / "manifest.csv"
    if not m.is_file():
        raise FileNotFoundError(f"{root}: not a feature store (no manifest.csv)")
    rows = read_csv(m)
    for r in rows:
        r["h5"] = str(root / r["h5"])
    return rows
