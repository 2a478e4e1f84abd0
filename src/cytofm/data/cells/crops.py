"""The square a detected cell is read as: ``crop_um`` micrometres (default twice the typical diameter the
folder was prepared with) centred on the cell, at the resolution its cells were detected with. One rule for
everything that reads cells as images (``extract --mode cells``, pretraining on cells), so a pretraining
crop and an extracted instance are the same square."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from cytofm.data.cells.store import read_cells

DEFAULT_TYPICAL_UM = 7.5


@dataclass
class CellSquares:
    """The cells of one prepared source as squares of ``size0`` level-0 pixels."""

    coords: np.ndarray  # (N, 2) int64: top-left corners
    size0: int
    mpp: float
    plane: np.ndarray | None  # (N,) z-stacks: the plane each cell is sharpest in
    crop_um: float


def folder_crop_um(folder: Path, crop_um: float | None = None) -> tuple[float, float]:
    """(crop_um, typical diameter): ``crop_um`` as given, else twice the typical diameter in the folder's
    ``config.yaml`` (the ``cells`` settings it was prepared with)."""
    cfg_path = Path(folder) / "config.yaml"
    settings = (yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else None) or {}
    typical = float((settings.get("cells") or {}).get("typical_diameter_um", DEFAULT_TYPICAL_UM))
    return crop_um or 2 * typical, typical


def cell_squares(h5: Path, item_mpp: float | None, crop_um: float) -> CellSquares | None:
    """The squares of the cells in ``cells/<id>.h5``; None when it holds no cell."""
    cells = read_cells(h5)
    if not len(cells):
        return None
    with h5py.File(h5, "r") as f:
        mpp = float(f.attrs.get("mpp") or item_mpp or 0)
    size0 = max(8, int(round(crop_um / mpp)))
    coords = np.round(cells.centre - size0 / 2).astype(np.int64)
    return CellSquares(coords, size0, mpp, cells.plane, crop_um)
