"""The default cell detector: stained material by optical density, touching cells split by a seeded
watershed on the distance transform, nuclei by the nuclear stain inside each cell. Needs no weights.

Steps (working resolution ``work_mpp``): summed optical density against the image's own glass above a
fixed threshold (or Otsu's, floored so that blank glass stays blank); holes up to one typical cell filled
(the pale centres of red cells, the clear cytoplasm of squamous cells); a connected object larger than
``clump_cells`` typical cells is kept whole and flagged as a clump; the others are split at the maxima of
their distance transform at least a quarter typical diameter apart (seeds), so two touching round cells
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
from cytofm.data.prepare.config import CellsConfig
from cytofm.data.prepare.foreground import background_intensity, optical_density, otsu_threshold


def disk_area_px(diameter_um: float, mpp: float) -> float:
    return float(np.pi * (diameter_um / mpp / 2) ** 2)


def stained_mask(rgb: np.ndarray, cfg: CellsConfig, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Stained material (bool) and the optical density (H, W, 3) of a working-scale image."""
    od = optical_density(rgb, background_intensity(rgb, cfg.min_background))
    total = od.sum(-1)  # not smoothed: a blur moves a low threshold off the edge (areas grew 10%)
    # Otsu's cut between glass and cells (a regular subsample is plenty), floored so that blank glass stays
    # blank, and capped by the fixed threshold: it lowers the cut on pale fields only, since on dark ones it
    # falls between dark and pale cells (chula_rbc12 pretraining part: 2 points more red cells found)
    otsu = max(otsu_threshold(total[::4, ::4]), cfg.od_min)
    thr = otsu if cfg.od_threshold is None else min(cfg.od_threshold, otsu)
    mask = total > thr
    mask = remove_small_holes(mask, max_size=int(disk_area_px(cfg.typical_diameter_um, mpp)))
    return mask, od


def split_cells(mask: np.ndarray, cfg: CellsConfig, mpp: float, nuclei: np.ndarray | None = None,
                to_nucleus: np.ndarray | None = None) -> tuple[np.ndarray, set[int]]:
    """Label image of cells and the labels kept whole as clumps. ``nuclei`` (labels): each nucleus seeds
    one cell, so a lobed nucleus or a cell larger than the typical one is not cut at its distance peaks;
    the distance peaks seed the cells without a nucleus (red cells)."""
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
    # seeds half a typical radius apart: overlapping red cells' centres are closer than one radius
    # (a whole radius merged 9% more of the labelled chula_rbc12 cells of the pretraining part)
    peaks = peak_local_max(smooth, min_distance=max(1, int(round(0.5 * r_typ))), labels=split * comps,
                           threshold_abs=0.3 * cfg.min_diameter_um / mpp / 2, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    nxt = 1
    if nuclei is not None and nuclei.any():
        if to_nucleus is None:
            to_nucleus = ndi.distance_transform_edt(nuclei == 0)
        near = to_nucleus < cfg.nucleus_reach_um / mpp  # its cytoplasm's peaks
        peaks = peaks[~near[tuple(peaks.T)]] if len(peaks) else peaks
        inside = (nuclei > 0) & split
        markers[inside] = nuclei[inside]
        nxt = int(nuclei.max()) + 1
    markers[tuple(peaks.T)] = np.arange(nxt, nxt + len(peaks))
    nxt += len(peaks)
    # components with no seed (too flat for a peak) stay one cell
    unseeded = np.setdiff1d(np.unique(comps[split]), np.unique(comps[markers > 0]))
    if len(unseeded):  # one marker at each such component's first pixel (it is the component's only one)
        ids, first = np.unique(comps.ravel(), return_index=True)
        at = first[np.searchsorted(ids, unseeded)]
        markers.ravel()[at] = np.arange(nxt, nxt + len(at))
        nxt += len(at)
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
    """Nuclear stain above Otsu's threshold over the cells' pixels (floored at ``nucleus_od_min`` and at
    twice their median) and above the counterstain there (a dark red cell holds much counterstain and some
    of the nuclear channel, a nucleus the reverse), specks below ``min_nucleus_um2`` dropped."""
    nuc = conc[..., 0]
    inside = nuc[cells]
    if not inside.size:
        return np.zeros(cells.shape, bool)
    # twice the cells' median as well: where red cells take up the nuclear dye (dark purple fields of
    # chula_rbc12 read 0.3 there), only what stands out from them is a nucleus
    thr = max(otsu_threshold(inside), cfg.nucleus_od_min, 2 * float(np.median(inside)))
    mask = (nuc > thr) & (nuc > conc[..., 1]) & cells
    return remove_small_objects(mask, max_size=max(1, int(cfg.min_nucleus_um2 / mpp / mpp)))


def nucleus_seeds(conc: np.ndarray, stained: np.ndarray, cfg: CellsConfig, mpp: float) -> np.ndarray:
    """Labelled nuclei that seed cells: the nuclear mask closed by ``nucleus_join_um``, so that the lobes
    of a segmented nucleus (neutrophils, eosinophils) are one nucleus of one cell, and no smaller than the
    smallest cell."""
    mask = nuclear_mask(conc, stained, cfg, mpp)
    r = int(round(cfg.nucleus_join_um / mpp))
    if r > 0 and mask.any():
        mask = ndi.binary_closing(np.pad(mask, r + 1), structure=_disk(r))[r + 1:-r - 1, r + 1:-r - 1]
    # a seed is at least the smallest cell's size: platelets' purple granules are not nuclei of cells
    mask = remove_small_objects(mask, max_size=int(disk_area_px(cfg.min_diameter_um, mpp)))
    return ndi.label(mask)[0]


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def detect_watershed(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    """Cells of a working-scale image of ``mpp`` um/px (level-0 coordinates: working / ``scale``)."""
    mask, od = stained_mask(rgb, cfg, mpp)
    if not mask.any():
        return CellTable.empty()
    conc = stain_concentrations(od, stain_matrix(cfg.stain, od if cfg.stain == "estimate" else None))
    nuclei = nucleus_seeds(conc, mask, cfg, mpp)
    to_nucleus = None
    if nuclei.any():  # the pale cytoplasm of nucleated cells (white cells, squamous cells) belongs to them
        to_nucleus = ndi.distance_transform_edt(nuclei == 0)
        pale = od.sum(-1) > cfg.cytoplasm_fraction * (cfg.od_threshold or cfg.od_min)
        mask |= pale & (to_nucleus < 0.5 * cfg.max_diameter_um / mpp)
        mask = remove_small_holes(mask, max_size=int(disk_area_px(cfg.typical_diameter_um, mpp)))
    labels, clumps = split_cells(mask, cfg, mpp, nuclei, to_nucleus)
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
