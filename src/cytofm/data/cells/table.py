"""What a detector returns for one image: every cell's centre, box, contours and measurements, in the
image's level-0 pixels, as columns (one row per cell)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MEASUREMENTS = ("area_um2", "perimeter_um", "circularity", "eccentricity", "nucleus_area_um2",
                "nucleus_to_cell", "od_nuclear", "od_other", "focus", "seg_confidence")
"""Per-cell measurements, in this order wherever they are written (h5, cells.csv, GeoJSON): the
morphometrics, then the cell's focus (``cytofm.data.prepare.focus`` over its box at the working resolution;
not a
morphometric feature: a quality measure, NaN in files written before it existed), and the outline's
segmentation confidence (``morphometrics.outline_confidence``: 1 for a cell outlined against the glass all
round, towards 0 as more of its outline is a cut through stained material or lies on the image's edge; 0
for a clump; NaN before it existed)."""


@dataclass
class CellTable:
    centre: np.ndarray  # (N, 2) float32 x, y
    bbox: np.ndarray  # (N, 4) float32 x0, y0, x1, y1
    contour: list[np.ndarray]  # N arrays (K, 2) float32 x, y: the cell's outline, simplified
    nucleus: list[np.ndarray]  # N arrays (K, 2); (0, 2) where no nucleus was found
    measures: dict[str, np.ndarray]  # MEASUREMENTS -> (N,) float32
    clump: np.ndarray  # (N,) bool: a clump kept whole (too large or irregular to split)
    notes: list[str] = field(default_factory=list)
    plane: np.ndarray | None = None  # (N,) int64: z-stacks, the plane each cell is sharpest in

    def __len__(self) -> int:
        return len(self.centre)

    @staticmethod
    def empty() -> CellTable:
        return CellTable(np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32), [], [],
                         {m: np.zeros(0, np.float32) for m in MEASUREMENTS}, np.zeros(0, bool))

    def select(self, keep: np.ndarray) -> CellTable:
        idx = np.flatnonzero(keep)
        return CellTable(self.centre[idx], self.bbox[idx], [self.contour[i] for i in idx],
                         [self.nucleus[i] for i in idx], {k: v[idx] for k, v in self.measures.items()},
                         self.clump[idx], list(self.notes), None if self.plane is None else self.plane[idx])

    def shifted(self, dx: float, dy: float) -> CellTable:
        d2, d4 = np.array([dx, dy], np.float32), np.array([dx, dy, dx, dy], np.float32)
        return CellTable(self.centre + d2, self.bbox + d4, [c + d2 for c in self.contour],
                         [n + d2 for n in self.nucleus], dict(self.measures), self.clump, list(self.notes),
                         self.plane)

    @staticmethod
    def concat(tables: list[CellTable]) -> CellTable:
        tables = [t for t in tables if len(t)] or [CellTable.empty()]
        planes = None if any(t.plane is None for t in tables) else np.concatenate([t.plane for t in tables])
        return CellTable(np.concatenate([t.centre for t in tables]), np.concatenate([t.bbox for t in tables]),
                         [c for t in tables for c in t.contour], [n for t in tables for n in t.nucleus],
                         {m: np.concatenate([t.measures[m] for t in tables]) for m in MEASUREMENTS},
                         np.concatenate([t.clump for t in tables]), plane=planes)
