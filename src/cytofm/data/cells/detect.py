"""Detection on a whole source, field or slide: the image is read region by region at the working
resolution with an overlap of one largest cell, and a cell is kept by the one region whose core (the region
without its overlap) holds its centre, so a cell on a region border is counted once and seen whole."""

from __future__ import annotations

import math

import numpy as np

from cytofm.data.cells.registry import CELL_DETECTORS
from cytofm.data.cells.table import CellTable
from cytofm.data.prepare.config import CellsConfig
from cytofm.utils.errors import UserError


class NoResolution(UserError, ValueError):
    """Cell sizes are in micrometres: a source without um/px cannot be detected."""


def working_scale(mpp: float, cfg: CellsConfig) -> tuple[float, float]:
    """(scale, working mpp): level-0 pixels are reduced to ``work_mpp`` where they are finer, never
    enlarged."""
    scale = min(1.0, mpp / cfg.work_mpp)
    return scale, mpp / scale


def regions(width: int, height: int, core: int) -> list[tuple[int, int, int, int]]:
    """Cores (x, y, w, h) in level-0 pixels tiling the image edge to edge."""
    nx, ny = max(1, math.ceil(width / core)), max(1, math.ceil(height / core))
    return [(i * core, j * core, min(core, width - i * core), min(core, height - j * core))
            for j in range(ny) for i in range(nx)]


def cell_focus(cells: CellTable, rgb: np.ndarray, scale: float, pad_px: int = 4) -> None:
    """Each cell's focus (its box at the working resolution, ``pad_px`` wider so that the whole edge is
    in it), written into its measurements; the glass brightness from the region."""
    from cytofm.data.prepare.focus import box_focus, focus_maps
    from cytofm.data.prepare.foreground import background_intensity

    if not len(cells):
        return
    b = np.round(cells.bbox * scale).astype(np.int64) + np.array([-pad_px, -pad_px, pad_px, pad_px])
    score, _ = box_focus(focus_maps(rgb, background_intensity(rgb)), b)
    cells.measures["focus"] = score


def cell_planes(cells: CellTable, src, box: tuple[int, int, int, int], out, scale: float,
                pad_px: int = 4) -> None:
    """Z-stacks read under ``best`` or ``all``: each cell's sharpest plane (its box scored in every plane of
    the region, at the working resolution) and its focus there."""
    from cytofm.data.prepare.focus import box_focus, focus_maps
    from cytofm.data.prepare.foreground import background_intensity

    if not len(cells):
        return
    x0, y0, x1, y1 = box
    b = np.round(cells.bbox * scale).astype(np.int64) + np.array([-pad_px, -pad_px, pad_px, pad_px])
    scores = []
    for z in range(src.n_planes):
        rgb = src.read(x0, y0, (x1 - x0, y1 - y0), out if scale < 1 else None, z=z)
        scores.append(box_focus(focus_maps(rgb, background_intensity(rgb)), b)[0])
    scores = np.stack(scores)
    cells.plane, cells.measures["focus"] = scores.argmax(0).astype(np.int64), scores.max(0)


def detect_source(src, mpp: float | None, cfg: CellsConfig, log=None) -> CellTable:
    """Every cell of an open source (``ImageSource`` or ``SlideSource``: ``read(x, y, size0, out)``) in
    level-0 pixels. Memory: one region of ``region_px`` + overlap working pixels at a time. A z-stack is
    detected in each region's best plane (or as its policy reads it), and every cell gets its own plane
    (:func:`cell_planes`)."""
    if mpp is None or not mpp > 0:
        raise NoResolution("cell detection needs the resolution in um/px (sizes are in micrometres): give "
                           "resolution.mpp=... or an mpp column in the manifest")
    detect = CELL_DETECTORS.get(cfg.detector)
    scale, wmpp = working_scale(mpp, cfg)
    core = max(1, int(cfg.region_px / scale))
    margin = int(math.ceil(cfg.max_diameter_um / mpp))
    found = []
    for x, y, w, h in regions(src.width, src.height, core):
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(src.width, x + w + margin), min(src.height, y + h + margin)
        out = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        rgb = src.read(x0, y0, (x1 - x0, y1 - y0), out if scale < 1 else None)
        rgb = np.ascontiguousarray(rgb[..., :3])
        cells = detect(rgb, wmpp, cfg, out[0] / (x1 - x0))
        policy = getattr(src, "policy", None)  # z-stacks: the plane policy
        if policy in ("best", "all"):  # every plane scored per cell
            cell_planes(cells, src, (x0, y0, x1, y1), out, out[0] / (x1 - x0))
        else:
            cell_focus(cells, rgb, out[0] / (x1 - x0))
            if isinstance(policy, int):
                cells.plane = np.full(len(cells), policy, np.int64)
        cells = cells.shifted(x0, y0)
        if len(cells):
            cx, cy = cells.centre[:, 0], cells.centre[:, 1]
            found.append(cells.select((cx >= x - 0.5) & (cx < x + w - 0.5) & (cy >= y - 0.5)
                                      & (cy < y + h - 0.5)))
    return CellTable.concat(found)
