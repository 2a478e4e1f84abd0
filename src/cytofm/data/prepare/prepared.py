"""Read back what ``cytofm prepare`` wrote: sources, their patch coordinates and metadata."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cytofm.data.sources.source import open_source
from cytofm.utils.io import read_csv, resolve_path

MANIFEST_COLUMNS = [
    "id", "path", "coords", "kind", "width", "height", "mpp", "target_mpp", "patch_size", "patch_size_level0",
    "patch_level", "whole", "n_patches", "n_candidates", "foreground_fraction", "focus_median",
    "n_planes", "z", "conversion",
]
"""The columns ``cytofm prepare`` writes first in a prepared set's manifest; any others are metadata."""


@dataclass
class PreparedItem:
    id: str
    path: Path
    kind: str
    whole: bool
    patch_size: int | None  # output pixels (None for whole images)
    size0: int | None  # level-0 pixels
    coords_path: Path
    mpp: float | None
    meta: dict[str, str]
    digest: str = ""  # sha256 of the source when it was prepared
    z: str = ""  # z-stacks: the plane policy it was prepared with (best, edf, all, a plane)

    def coords(self) -> np.ndarray:
        with h5py.File(self.coords_path, "r") as f:
            return f["coords"][:]

    def planes(self) -> np.ndarray | None:
        """The plane each patch of a z-stack is read from (best, all, a plane), else None."""
        with h5py.File(self.coords_path, "r") as f:
            return f["z"][:] if "z" in f else None

    def open(self):
        return open_source(self.path, self.kind, self.mpp, self.z or None)

    def patches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``((x, y), rgb)`` for each kept patch, resampled to the target resolution."""
        src = self.open()
        try:
            planes = self.planes()
            if self.whole:
                for z in [None] if planes is None else planes.tolist():
                    yield np.zeros(2, np.int64), src.read(0, 0, (src.width, src.height), z=z)
                return
            for k, xy in enumerate(self.coords()):
                z = None if planes is None else int(planes[k])
                yield xy, src.read(int(xy[0]), int(xy[1]), self.size0, self.patch_size, z=z)
        finally:
            src.close()


def is_prepared_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "manifest.csv").is_file() and (p / "coords").is_dir()


def load_prepared(root: str | os.PathLike) -> list[PreparedItem]:
    root = Path(root)
    items = []
    for r in read_csv(root / "manifest.csv"):
        meta = {k: v for k, v in r.items() if k not in MANIFEST_COLUMNS}
        whole = r.get("whole", "False") == "True"
        items.append(PreparedItem(
            id=r["id"], path=resolve_path(r["path"], root), kind=r.get("kind", "image"), whole=whole,
            patch_size=None if whole or not r.get("patch_size") else int(r["patch_size"]),
            size0=None if whole or not r.get("patch_size_level0") else int(r["patch_size_level0"]),
            coords_path=root / r["coords"], mpp=float(r["mpp"]) if r.get("mpp") else None, meta=meta,
            digest=r.get("source_sha256", ""), z=r.get("z", "") or "",
        ))
    return items
