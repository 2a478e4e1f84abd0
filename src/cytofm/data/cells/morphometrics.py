"""Cell morphometrics from a label image: size and shape in micrometres (scikit-image's region properties),
the nucleus inside each cell, and the mean amount of each stain, with the outlines a viewer draws."""

from __future__ import annotations

import numpy as np
from skimage.measure import find_contours, regionprops

from cytofm.data.cells.table import MEASUREMENTS, CellTable


def outline(mask: np.ndarray) -> np.ndarray:
    """(K, 2) x, y outline of the largest part of a binary crop (pixel centres; corners at +-0.5)."""
    padded = np.pad(mask.astype(np.float32), 1)
    rings = find_contours(padded, 0.5)
    if not rings:
        return np.zeros((0, 2), np.float32)
    ring = max(rings, key=len) - 1.0  # undo the pad
    return ring[:, ::-1].astype(np.float32)  # (row, col) -> (x, y)


def simplify(rings: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """Every outline simplified (Douglas-Peucker) to within ``tolerance`` in one vectorised shapely call
    (a loop of scikit-image's ``approximate_polygon`` took a seventh of the detection time)."""
    import shapely

    idx = [k for k, r in enumerate(rings) if len(r) >= 2]
    if tolerance <= 0 or not idx:
        return rings
    sel = [rings[k] for k in idx]
    lines = shapely.linestrings(np.concatenate(sel),
                                indices=np.repeat(np.arange(len(sel)), [len(r) for r in sel]))
    simple = shapely.simplify(lines, tolerance)
    coords, which = shapely.get_coordinates(simple, return_index=True)
    out = list(rings)
    for k, part in zip(idx, np.split(coords.astype(np.float32), np.flatnonzero(np.diff(which)) + 1),
                       strict=True):
        out[k] = part
    return out


def outline_confidence(labels: np.ndarray, material: np.ndarray | None = None) -> np.ndarray:
    """Per label (index = label), the share of its boundary that meets the glass (label 0, and not
    ``material``: stained pixels the detector left out of every cell) rather than another cell, left-out
    material or the image's edge. A boundary against the glass is seen; one against another cell or
    stained material is a cut the detector chose, and one at the edge hides the rest of the cell, so a
    gallery or a count can leave out the cells whose outline is mostly chosen or hidden."""
    padded = np.pad(labels, 1, constant_values=-1)
    free = np.pad(np.ones(labels.shape, bool) if material is None else ~material, 1, constant_values=False)
    inner = padded[1:-1, 1:-1]
    n = int(labels.max()) + 1
    total, glass = np.zeros(n), np.zeros(n)
    for sl in ((slice(None, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
               (slice(1, -1), slice(None, -2)), (slice(1, -1), slice(2, None))):
        nb = padded[sl]
        edge = (inner > 0) & (nb != inner)
        total += np.bincount(inner[edge], minlength=n)
        glass += np.bincount(inner[edge & (nb == 0) & free[sl]], minlength=n)
    return np.where(total > 0, glass / np.maximum(total, 1), 0.0)


def _shape_moments(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cy, cx, eccentricity) of each label in ``ids``, from its pixels' first and second moments at once
    (one bincount per moment): the same values as scikit-image's per-region ``centroid`` and
    ``eccentricity`` (the inertia tensor's eigenvalues), which cost a third of the detection time."""
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    n = int(labels.max()) + 1
    count = np.maximum(np.bincount(lab, minlength=n), 1).astype(np.float64)
    r, c = rows.astype(np.float64), cols.astype(np.float64)
    mr, mc = np.bincount(lab, r, n) / count, np.bincount(lab, c, n) / count
    dr, dc = r - mr[lab], c - mc[lab]  # central, so the second moments keep their precision
    vr, vc = np.bincount(lab, dr * dr, n) / count, np.bincount(lab, dc * dc, n) / count
    vrc = np.bincount(lab, dr * dc, n) / count
    half, mean = np.sqrt(((vr - vc) / 2) ** 2 + vrc ** 2), (vr + vc) / 2
    big, small = mean + half, np.maximum(mean - half, 0)
    ecc = np.where(big > 0, np.sqrt(np.clip(1 - small / np.where(big > 0, big, 1), 0, 1)), 0.0)
    return mr[ids], mc[ids], ecc[ids]


def measure_cells(labels: np.ndarray, nucleus: np.ndarray, conc: np.ndarray, mpp: float, clump: set[int],
                  scale: float, tolerance: float, material: np.ndarray | None = None) -> CellTable:
    """One row per label of ``labels`` (working pixels of ``mpp`` um), coordinates returned in level-0
    pixels (working = level-0 x ``scale``; a pixel's centre is its integer coordinate at both scales).
    ``nucleus``: bool mask of nuclear stain; a cell's nucleus is its part of it. ``clump``: labels kept
    whole as clumps. ``material``: the stained pixels, so that a boundary against stained material left
    out of every cell does not count as seen against the glass."""
    props = regionprops(labels)
    if not props:
        return CellTable.empty()
    n = len(props)
    centre, bbox = np.zeros((n, 2), np.float32), np.zeros((n, 4), np.float32)
    cols = {m: np.zeros(n, np.float32) for m in MEASUREMENTS}
    contours, nuclei, flags = [], [], np.zeros(n, bool)
    confidence = outline_confidence(labels, material)
    cys, cxs, ecc = _shape_moments(labels, np.array([p.label for p in props]))
    for k, p in enumerate(props):
        r0, c0, r1, c1 = p.bbox
        cell = p.image
        nuc = nucleus[r0:r1, c0:c1] & cell
        area, nuc_area = float(p.area), float(nuc.sum())
        perim = max(float(p.perimeter), 1e-6)
        cy, cx = cys[k], cxs[k]
        centre[k] = ((cx + 0.5) / scale - 0.5, (cy + 0.5) / scale - 0.5)  # pixel centres at integers
        bbox[k] = (c0 / scale, r0 / scale, c1 / scale, r1 / scale)
        inside = conc[r0:r1, c0:c1][cell]
        cols["area_um2"][k] = area * mpp * mpp
        cols["perimeter_um"][k] = perim * mpp
        cols["circularity"][k] = min(1.0, 4 * np.pi * area / (perim * perim))
        cols["eccentricity"][k] = ecc[k]
        cols["nucleus_area_um2"][k] = nuc_area * mpp * mpp
        cols["nucleus_to_cell"][k] = nuc_area / area
        cols["od_nuclear"][k], cols["od_other"][k] = inside.mean(0) if len(inside) else (0.0, 0.0)
        offset = np.array([c0, r0], np.float32)
        contours.append(outline(cell) + offset)
        nuclei.append(outline(nuc) + offset if nuc_area else np.zeros((0, 2), np.float32))
        flags[k] = p.label in clump
        cols["seg_confidence"][k] = 0.0 if flags[k] else confidence[p.label]
    # simplified at the working scale, then in level-0 pixels (a pixel's centre at its integer coordinate)
    contours, nuclei = ([(r + 0.5) / scale - 0.5 for r in simplify(rings, tolerance)]
                        for rings in (contours, nuclei))
    return CellTable(centre, bbox, contours, nuclei, cols, flags)


FEATURES = ("log_area", "log_perimeter", "circularity", "eccentricity", "log_nucleus_area",
            "nucleus_to_cell", "od_nuclear", "od_other")
"""The morphometric feature set (``--encoder morphometrics``), one column per measurement."""


def morphometric_features(cells: CellTable, typical_diameter_um: float) -> np.ndarray:
    """(N, 8) features of cells, on scales that need no statistics of a data set (so a model trained on
    one extraction applies to another unchanged): sizes as the log of their ratio to the preparation's
    typical cell (0 for a typical cell; a doubling is +0.69 whatever the cell type), shape ratios and
    optical densities as measured (they lie in [0, 1] and [0, ~1.5])."""
    m = cells.measures
    area0 = np.pi * (typical_diameter_um / 2) ** 2
    return np.stack([
        np.log(np.maximum(m["area_um2"], 1e-3) / area0),
        np.log(np.maximum(m["perimeter_um"], 1e-3) / (np.pi * typical_diameter_um)),
        m["circularity"], m["eccentricity"],
        np.log1p(m["nucleus_area_um2"] / area0),
        m["nucleus_to_cell"], m["od_nuclear"], m["od_other"]], 1).astype(np.float32)
