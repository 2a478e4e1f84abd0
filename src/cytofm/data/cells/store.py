"""Detected cells on disk: ``cells/<id>.h5`` per source (columns, and each outline as a slice of one flat
array: ragged outlines without pickled objects) and the run's ``cells.csv`` (one row per cell)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cytofm.data.cells.table import MEASUREMENTS, CellTable
from cytofm.utils.io import atomic_path


def _ragged(group, name: str, arrays: list[np.ndarray]) -> None:
    lengths = [len(a) for a in arrays]
    group.create_dataset(f"{name}_offsets", data=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    flat = np.concatenate(arrays) if sum(lengths) else np.zeros((0, 2), np.float32)
    group.create_dataset(f"{name}_xy", data=flat.astype(np.float32))


def _unragged(f, name: str) -> list[np.ndarray]:
    off, xy = f[f"{name}_offsets"][:], f[f"{name}_xy"][:]
    return [xy[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]


def write_cells(path: Path, cells: CellTable, attrs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("centre", data=cells.centre.astype(np.float32))
        f.create_dataset("bbox", data=cells.bbox.astype(np.float32))
        f.create_dataset("clump", data=cells.clump.astype(bool))
        if cells.plane is not None:
            f.create_dataset("z", data=cells.plane.astype(np.int64))
        for m in MEASUREMENTS:
            f.create_dataset(f"measures/{m}", data=cells.measures[m].astype(np.float32))
        _ragged(f, "contour", cells.contour)
        _ragged(f, "nucleus", cells.nucleus)
        f.attrs.update(attrs)


def read_cells(path: Path) -> CellTable:
    with h5py.File(path, "r") as f:
        return CellTable(f["centre"][:], f["bbox"][:], _unragged(f, "contour"), _unragged(f, "nucleus"),
                         {m: f[f"measures/{m}"][:] if f"measures/{m}" in f else
                          np.full(len(f["centre"]), np.nan, np.float32) for m in MEASUREMENTS},
                         f["clump"][:].astype(bool), plane=f["z"][:] if "z" in f else None)


def cell_rows(item_id: str, cells: CellTable) -> list[dict]:
    """``cells.csv`` rows of one source: ids ``<item>_c<k>``, centre, box, clump flag, measurements."""
    rows = []
    for k in range(len(cells)):
        row = {"item": item_id, "cell": f"{item_id}_c{k}", "x": round(float(cells.centre[k, 0]), 2),
               "y": round(float(cells.centre[k, 1]), 2),
               **{n: round(float(v), 2)
                  for n, v in zip(("x0", "y0", "x1", "y1"), cells.bbox[k], strict=True)},
               "clump": bool(cells.clump[k])}
        row.update({m: round(float(cells.measures[m][k]), 4) for m in MEASUREMENTS})
        if cells.plane is not None:
            row["z"] = int(cells.plane[k])
        rows.append(row)
    return rows


CLUMP_CLASS = ("Clump", (255, 200, 0))


def cell_features(cells: CellTable) -> list[dict]:
    """The cells as QuPath ``cell`` objects: the outline as geometry, the nucleus as ``nucleusGeometry``,
    the morphometrics as measurements, clumps classified ``Clump``. Outlines too short to be polygons (a
    cell of a few pixels) are left out."""
    import shapely

    from cytofm.data.annotations.geojson import cell_feature

    out = []
    for k in range(len(cells)):
        if len(cells.contour[k]) < 3:
            continue
        nucleus = shapely.Polygon(cells.nucleus[k]) if len(cells.nucleus[k]) >= 3 else None
        out.append(cell_feature(shapely.Polygon(cells.contour[k]), nucleus,
                                CLUMP_CLASS if cells.clump[k] else None,
                                {m: float(cells.measures[m][k]) for m in MEASUREMENTS}))
    return out
