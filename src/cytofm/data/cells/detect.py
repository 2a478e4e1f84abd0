"""Detection on a whole source, field or slide: the image is read region by region at the working
resolution with an overlap of one largest cell, and a cell is kept by the one region whose core (the region
without its overlap) holds its centre, so a cell on a region border is counted once and seen whole."""

from __future__ import annotations

import math

import numpy as np

from cytofm.data.cells.registry import CELL_DETECTORS
from cytofm.data.cells.table import CellTable
from cytofm.data.prepare.config import CellsConfig
from cytofm.data.sources.resolution import missing_resolution
from cytofm.utils.errors import UserError


class NoResolution(UserError, ValueError):
    """Cell sizes are in micrometres: a source without um/px cannot be detected."""


class ImplausibleResolution(UserError, ValueError):
    """The cells found are too few pixels across for their measurements to mean anything."""


MAX_DIAMETER_RATIO = 2.0
"""The cells' median diameter may differ from ``typical_diameter_um`` by this factor before the um/px is
doubted: the detector's accepted sizes (min 4, typical 7.5, max 25 um by default) span about 2-3x either
side of typical, so a population centred more than 2x away (4x in area) is not the cells the config
describes; usually a wrong ``--mpp``."""
MIN_CELL_PX = 3.0
"""Below this median diameter in working pixels (a disc of about 7 pixels) an outline, a perimeter and a
nucleus cannot be measured: the result would be meaningless and the source is refused."""


def plausible_resolution(cells: CellTable, mpp: float, cfg: CellsConfig) -> tuple[str, str]:
    """(warning, refusal), each '' when there is none: the median diameter of the cells found (from their
    areas) compared with the typical one the config expects, and with the pixels it spans at the working
    resolution. The cells suggest ``mpp * typical / median`` um/px."""
    if not len(cells):
        return "", ""
    area = np.asarray(cells.measures["area_um2"], np.float64)
    d_um = float(np.median(2 * np.sqrt(np.maximum(area, 0) / np.pi)))
    wmpp = working_scale(mpp, cfg)[1]
    d_px = d_um / wmpp
    suggested = mpp * cfg.typical_diameter_um / d_um if d_um > 0 else float("nan")
    said = (f"at {mpp:g} um/px the {len(cells)} cell(s) found are {d_um:.3g} um ({d_px:.3g} px) across "
            f"(median), cells.typical_diameter_um is {cfg.typical_diameter_um:g}")
    if d_px < MIN_CELL_PX:
        return "", (f"{said}: under {MIN_CELL_PX:g} px across, cells cannot be measured; the um/px is "
                    f"likely wrong (a {cfg.typical_diameter_um:g} um cell would be "
                    f"{cfg.typical_diameter_um / wmpp:.2g} px at {mpp:g} um/px): check --mpp")
    ratio = d_um / cfg.typical_diameter_um
    if ratio > MAX_DIAMETER_RATIO or ratio < 1 / MAX_DIAMETER_RATIO:
        return (f"{said}: the cells suggest about {suggested:.2g} um/px; check --mpp (or the preset's "
                "cells.typical_diameter_um)"), ""
    return "", ""


MOSTLY_CLUMPS = 0.5
"""A source whose cells' area is more than this share clumps (kept whole, not split) is said: its counts,
sizes and ratios describe the clumps' outlines more than its cells."""


def clump_share(cells: CellTable) -> float:
    """The share of the cells' total area that lies in clumps (0 where nothing was found)."""
    area = np.asarray(cells.measures["area_um2"], np.float64)
    total = float(area.sum())
    return float(area[cells.clump].sum()) / total if total > 0 else 0.0


def clump_warning(cells: CellTable) -> str:
    """'' or a warning that the source is mostly clumps (dense or overlapping cells it could not split)."""
    share = clump_share(cells)
    if share <= MOSTLY_CLUMPS:
        return ""
    return (f"{share:.0%} of the cells' area is in {int(cells.clump.sum())} clump(s) kept whole (dense or "
            "overlapping cells that could not be split): this source's cell counts, sizes and ratios cannot "
            "be trusted (a thinner preparation, or a field where cells lie apart, is needed)")


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
        raise NoResolution(missing_resolution(src.path, "cell detection (sizes are in micrometres)"))
    detect = CELL_DETECTORS.get(cfg.detector)
    scale, wmpp = working_scale(mpp, cfg)
    core = max(1, int(cfg.region_px / scale))
    margin = int(math.ceil(cfg.max_diameter_um / mpp))
    found, notes = [], []
    for x, y, w, h in regions(src.width, src.height, core):
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(src.width, x + w + margin), min(src.height, y + h + margin)
        out = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        rgb = src.read(x0, y0, (x1 - x0, y1 - y0), out if scale < 1 else None)
        rgb = np.ascontiguousarray(rgb[..., :3])
        cells = detect(rgb, wmpp, cfg, out[0] / (x1 - x0))
        whole = (w, h) == (src.width, src.height)
        notes += [n if whole else f"region at ({x}, {y}): {n}" for n in cells.notes]
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
    table = CellTable.concat(found)
    table.notes = notes[:5] + ([f"... and {len(notes) - 5} more region(s) alike"] if len(notes) > 5 else [])
    return table
