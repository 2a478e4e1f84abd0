"""The default cell detector: stained material by optical density, touching cells split by a seeded
watershed on the distance transform, nuclei by the nuclear stain inside each cell. Needs no weights.

Steps (working resolution ``work_mpp``): summed optical density against the image's own glass above a
fixed threshold (or Otsu's, floored so that blank glass stays blank); holes up to one typical cell filled
(the pale centres of red cells, the clear cytoplasm of squamous cells); a connected object larger than
``clump_cells`` typical cells is kept whole and flagged as a clump; the others are split at the maxima of
their distance transform at least half a typical diameter apart (seeds), so two touching round cells
become two; pieces smaller than ``min_diameter_um`` are debris, pieces larger than ``max_diameter_um`` or
not convex enough are flagged as clumps. Soille, "Morphological Image Analysis", 2003 (seeded watershed);
Ruifrok & Johnston 2001 (OD).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.morphology import remove_small_holes, remove_small_objects
from skimage.segmentation import watershed

from cytofm.data.cells.morphometrics import measure_cells
from cytofm.data.cells.stains import stain_concentrations, stain_matrix
from cytofm.data.cells.table import CellTable
from cytofm.data.config import CellsConfig
from cytofm.data.foreground import background_intensity, optical_density, otsu_threshold


def disk_area_px(diameter_um: float, mpp: float) -> float:
    return float(np.pi * (diameter_um / mpp / 2) ** 2)


def stained_mask(rgb: np.ndarray, cfg: CellsConfig, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Stained material (bool) and the optical density (H, W, 3) of a working-scale image."""
    od = optical_density(rgb, background_intensity(rgb, cfg.min_background))
    total = od.sum(-1)  # not smoothed: a blur moves a low threshold off the edge (areas grew 10%)
    if cfg.od_threshold is not None:
        thr = cfg.od_threshold
    else:
        fg = total[total > cfg.od_min / 4]
        thr = max(otsu_threshold(fg) if fg.size > 100 else np.inf, cfg.od_min)
    mask = total > thr
    mask = remove_small_holes(mask, max_size=int(disk_area_px(cfg.typical_diameter_um, mpp)))
    return mask, od


def split_cells(mask: np.ndarray, cfg: CellsConfig, mpp: float) -> tuple[np.ndarray, set[int]]:
    """Label image of cells and the labels kept whole as clumps."""
    min_area = disk_area_px(cfg.min_diameter_um, mpp)
    typical = disk_area_px(cfg.typical_diameter_um, mpp)
    mask = remove_small_objects(mask, max_size=max(1, int(min_area)))
    comps, n = ndi.label(mask)
    if n == 0:
        return comps, set()
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    whole = np.flatnonzero(sizes > cfg.clump_cells * typical)
    whole = whole[whole > 0]
    dist = ndi.distance_transform_edt(mask)
    smooth = ndi.gaussian_filter(dist, max(0.5, 0.05 * cfg.typical_diameter_um / mpp))
    split = mask & ~np.isin(comps, whole)
    r_typ = cfg.typical_diameter_um / mpp / 2
    peaks = peak_local_max(smooth, min_distance=max(1, int(round(r_typ))), labels=split * comps,
                           threshold_abs=0.3 * cfg.min_diameter_um / mpp / 2, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components with no seed (too flat for a peak) stay one cell
    unseeded = np.setdiff1d(np.unique(comps[split]), np.unique(comps[tuple(peaks.T)]) if len(peaks) else [])
    nxt = len(peaks) + 1
    for c in unseeded:
        rr, cc = np.nonzero(comps == c)
        markers[rr[len(rr) // 2], cc[len(cc) // 2]] = nxt
        nxt += 1
    labels = watershed(-smooth, markers, mask=split)
    clumps: set[int] = set()
    for c in whole:
        labels[comps == c] = nxt
        clumps.add(nxt)
        nxt += 1
    labels = drop_small(labels, min_area)
    return labels, clumps | _irregular(labels, cfg, mpp)


def drop_small(labels: np.ndarray, min_area: float) -> np.ndarray:
    sizes = np.bincount(labels.ravel())
    small = np.flatnonzero(sizes < min_area)
    small = small[small > 0]
    if len(small):
        labels = np.where(np.isin(labels, small), 0, labels)
    return labels


def _irregular(labels: np.ndarray, cfg: CellsConfig, mpp: float) -> set[int]:
    """Pieces larger than the largest cell or less convex than ``min_solidity``: flagged as clumps."""
    from skimage.measure import regionprops

    big = disk_area_px(cfg.max_diameter_um, mpp)
    return {p.label for p in regionprops(labels) if p.area > big or p.solidity < cfg.min_solidity}


def nuclear_mask(conc: np.ndarray, cells: np.ndarray, cfg: CellsConfig, mpp: float) -> np.ndarray:
    """Nuclear stain above Otsu's threshold over the cells' pixels (floored at ``nucleus_od_min``),
    specks below ``min_nucleus_um2`` dropped."""
    nuc = conc[..., 0]
    inside = nuc[cells]
    if not inside.size:
        return np.zeros(cells.shape, bool)
    thr = max(otsu_threshold(inside), cfg.nucleus_od_min)
    mask = (nuc > thr) & cells
    return remove_small_objects(mask, max_size=max(1, int(cfg.min_nucleus_um2 / mpp / mpp)))


def detect_watershed(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    """Cells of a working-scale image of ``mpp`` um/px (level-0 coordinates: working / ``scale``)."""
    mask, od = stained_mask(rgb, cfg, mpp)
    if not mask.any():
        return CellTable.empty()
    labels, clumps = split_cells(mask, cfg, mpp)
    conc = stain_concentrations(od, stain_matrix(cfg.stain, od if cfg.stain == "estimate" else None))
    nucleus = nuclear_mask(conc, labels > 0, cfg, mpp)
    return measure_cells(labels, nucleus, conc, mpp, clumps, scale, cfg.contour_tolerance_px)


def detect_otsu(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    """The plain baseline: Otsu's threshold on optical density and connected components (no hole filling
    beyond the same, no splitting); debris below ``min_diameter_um`` dropped."""
    mask, od = stained_mask(rgb, cfg, mpp)
    if not mask.any():
        return CellTable.empty()
    labels, _ = ndi.label(mask)
    labels = drop_small(labels, disk_area_px(cfg.min_diameter_um, mpp))
    conc = stain_concentrations(od, stain_matrix(cfg.stain if cfg.stain != "estimate" else "giemsa"))
    nucleus = nuclear_mask(conc, labels > 0, cfg, mpp)
    return measure_cells(labels, nucleus, conc, mpp, set(), scale, cfg.contour_tolerance_px)
