"""The default cell detector: stained material by optical density, nuclei by the image's own chromatin
colour, touching cells split by a seeded watershed on the distance transform. Needs no weights.

Steps (working resolution ``work_mpp``): summed optical density against the image's own glass above the
lower of the image's three-class Otsu cuts, and around nuclei above its two-class cut (both floored so that
blank glass stays blank, ``od_threshold`` a cap where set: :func:`cell_cuts`); holes up to one typical cell
filled (the pale centres of red cells, the clear cytoplasm of squamous cells); nuclei by colour
(:mod:`cytofm.data.cells.nuclei`; the stain vectors where the image holds no second colour), lobes joined,
each nucleus the seed of one cell; the other cells seeded at the maxima of the distance transform at least
a quarter typical diameter apart and not within ``nucleus_reach_um`` of a nucleus, so two touching round
cells become two and a white cell's own cytoplasm is not a cell; a nucleated cell ends
``cytoplasm_reach_um`` past its nucleus (beyond, the red cells it touches are seeded on their own); pieces
smaller than ``min_diameter_um`` are debris, pieces larger than ``max_diameter_um`` or not convex enough
are flagged as clumps, and a large object is kept whole as one clump only where most of it split into
such pieces (not for its size alone). Soille, "Morphological Image Analysis", 2003 (seeded watershed);
Ruifrok & Johnston 2001 (OD).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.morphology import remove_small_holes, remove_small_objects
from skimage.segmentation import watershed

from cytofm.data.cells.morphometrics import measure_cells
from cytofm.data.cells.nuclei import chromatin_mask, joined, red_absorption, stain_problem
from cytofm.data.cells.stains import stain_concentrations, stain_matrix
from cytofm.data.cells.table import CellTable
from cytofm.data.prepare.config import CellsConfig
from cytofm.data.prepare.foreground import background_intensity, optical_density, otsu_threshold


def disk_area_px(diameter_um: float, mpp: float) -> float:
    return float(np.pi * (diameter_um / mpp / 2) ** 2)


def stained_mask(rgb: np.ndarray, cfg: CellsConfig, mpp: float,
                 cut: str = "glass") -> tuple[np.ndarray, np.ndarray]:
    """Stained material (bool) above the ``glass`` or the ``dense`` cut of :func:`cell_cuts`, and the
    optical density (H, W, 3) of a working-scale image."""
    od, total, cuts = density(rgb, cfg)
    return _above(total, cuts[0 if cut == "glass" else 1], cfg, mpp), od


def density(rgb: np.ndarray, cfg: CellsConfig) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Optical density (H, W, 3) against the image's own glass, its sum over the channels (not smoothed:
    a blur moves a low threshold off the edge; areas grew 10%) and the two cuts of :func:`cell_cuts`."""
    od = optical_density(rgb, background_intensity(rgb, cfg.min_background))
    total = od.sum(-1)
    return od, total, cell_cuts(total, cfg)


def _above(total: np.ndarray, cut: float, cfg: CellsConfig, mpp: float) -> np.ndarray:
    """Material above ``cut``, its holes up to one typical cell filled (pale centres of red cells)."""
    return remove_small_holes(total > cut, max_size=int(disk_area_px(cfg.typical_diameter_um, mpp)))


def cell_cuts(total: np.ndarray, cfg: CellsConfig) -> tuple[float, float]:
    """(glass, dense): two cuts of summed optical density, both from the image itself (a regular subsample
    is plenty), floored at ``od_min`` so that blank glass stays blank and capped by ``od_threshold`` where
    one is set. ``glass`` is the lower of the three-class Otsu cuts (glass | pale | dark material): where a
    field holds dark nuclei, the two-class cut falls between them and everything else and loses pale red
    cells. ``dense``, the two-class cut, is what is taken around nuclei, where pale bridges would join a
    white cell to its red neighbours. Both move with the stain: a lab whose stain is darker or paler by any
    factor gets the same cells (a fixed cut did not: under a 1.6x darker stain white cells joined their
    neighbours)."""
    from skimage.filters import threshold_multiotsu

    sub = total[::4, ::4]
    dense = otsu_threshold(sub)
    try:
        glass = float(threshold_multiotsu(sub, classes=3, nbins=128)[0])
    except ValueError:  # fewer than three distinct values
        glass = dense
    cuts = [max(v, cfg.od_min) for v in (glass, dense)]
    if cfg.od_threshold is not None:
        cuts = [min(cfg.od_threshold, v) for v in cuts]
    return cuts[0], cuts[1]


def split_cells(mask: np.ndarray, cfg: CellsConfig, mpp: float, nuclei: np.ndarray | None = None,
                to_nucleus: np.ndarray | None = None, dense: np.ndarray | None = None
                ) -> tuple[np.ndarray, set[int]]:
    """Label image of cells and the labels kept whole as clumps. ``nuclei`` (labels): each nucleus seeds
    one cell, so a lobed nucleus or a cell larger than the typical one is not cut at its distance peaks;
    the distance peaks seed the cells without a nucleus (red cells). A nucleated cell ends
    ``cytoplasm_reach_um`` from its nucleus: what it flooded beyond is anucleate cells it touches, seeded
    again on their own."""
    min_area = disk_area_px(cfg.min_diameter_um, mpp)
    typical = disk_area_px(cfg.typical_diameter_um, mpp)
    mask = remove_small_objects(mask, max_size=max(1, int(min_area)))
    comps, n = ndi.label(mask)
    if n == 0:
        return comps, set()
    has_nuclei = nuclei is not None and bool(nuclei.any())
    if has_nuclei and to_nucleus is None:
        to_nucleus = ndi.distance_transform_edt(nuclei == 0)
    labels = _flood(mask, comps, cfg, mpp, nuclei if has_nuclei else None, to_nucleus)
    if has_nuclei:
        nucleated = (labels > 0) & (labels <= int(nuclei.max()))
        far = nucleated & (to_nucleus > cfg.cytoplasm_reach_um / mpp)
        if far.any():
            owner = np.where(far, labels, 0)
            labels[far] = 0
            rest = drop_small(_flood(far, ndi.label(far)[0], cfg, mpp, None, None), min_area)
            labels = np.where(rest > 0, rest + labels.max(), labels)
            # the pale part of pieces too small to be a cell is the white cell's own cytoplasm (its dense
            # part, a sliver of a red cell, is left out)
            back = (owner > 0) & (labels == 0) & (True if dense is None else ~dense)
            labels[back] = owner[back]
    labels = drop_small(labels, min_area)
    return _unsplittable(labels, comps, _irregular(labels, cfg, mpp), cfg.clump_cells * typical)


def _unsplittable(labels: np.ndarray, comps: np.ndarray, irregular: set[int],
                  large: float) -> tuple[np.ndarray, set[int]]:
    """Large objects (over ``large`` pixels: ``clump_cells`` typical cells) are split like any other, and
    kept whole as one clump only where most of their area split into irregular pieces (no cell shapes to
    be found in them): an object is not kept whole for its size alone."""
    sizes = np.bincount(comps.ravel())
    big = np.flatnonzero(sizes > large)
    big = big[big > 0]
    if not len(big):
        return labels, irregular
    odd = np.isin(labels, list(irregular)) if irregular else np.zeros(labels.shape, bool)
    share = ndi.sum(odd, comps, big) / np.maximum(sizes[big], 1)
    nxt, clumps = int(labels.max()) + 1, set(irregular)
    for c in big[np.asarray(share) > 0.5]:
        inside = comps == c
        clumps -= set(np.unique(labels[inside]).tolist())
        labels[inside & (labels > 0)] = nxt
        clumps.add(nxt)
        nxt += 1
    return labels, clumps


def _flood(split: np.ndarray, comps: np.ndarray, cfg: CellsConfig, mpp: float, nuclei: np.ndarray | None,
           to_nucleus: np.ndarray | None) -> np.ndarray:
    """Seeded watershed of ``split`` on its smoothed distance transform: nuclei (labels 1..max) and the
    distance peaks away from them, one seed per component that has none."""
    dist = ndi.distance_transform_edt(split)
    smooth = ndi.gaussian_filter(dist, max(0.5, 0.05 * cfg.typical_diameter_um / mpp))
    r_typ = cfg.typical_diameter_um / mpp / 2
    # seeds half a typical radius apart: overlapping red cells' centres are closer than one radius
    # (a whole radius merged 9% more of the labelled chula_rbc12 cells of the pretraining part)
    peaks = peak_local_max(smooth, min_distance=max(1, int(round(0.5 * r_typ))), labels=split * comps,
                           threshold_abs=0.3 * cfg.min_diameter_um / mpp / 2, exclude_border=False)
    markers = np.zeros(split.shape, np.int32)
    nxt = 1
    if nuclei is not None:
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
    return watershed(-smooth, markers, mask=split)


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
    # the convex hull lies inside the box, so a piece filling enough of its box is convex enough without
    # computing its hull (most cells: a disc fills 79% of its box); the hulls were a seventh of the time
    return {p.label for p in regionprops(labels)
            if p.area > big or (p.area < cfg.min_solidity * p.area_bbox and p.solidity < cfg.min_solidity)}


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


def find_nuclei(od: np.ndarray, conc: np.ndarray, stained: np.ndarray, cfg: CellsConfig,
                mpp: float, material: np.ndarray | None = None) -> np.ndarray:
    """Nuclear pixels (bool), lobes joined by ``nucleus_join_um``: by the image's own chromatin colour
    among the ``stained`` pixels, or among the paler ``material`` where those hold one colour
    (``cells.nuclei: colour``); where neither does, by the stain vectors."""
    mask = None
    if cfg.nuclei == "colour":
        score, total = red_absorption(od), od.sum(-1)
        mask = chromatin_mask(score, total, stained, cfg, mpp)
        if mask is None and material is not None:
            # where white cells are alone, Otsu's cut of the density falls between their nuclei and their
            # cytoplasm, and the nuclei alone hold one colour: compared with the pale material, they differ
            mask = chromatin_mask(score, total, material, cfg, mpp)
    if mask is None:
        mask = nuclear_mask(conc, stained, cfg, mpp)
    return joined(mask, int(round(cfg.nucleus_join_um / mpp)))


def nucleus_seeds(nuclei: np.ndarray, cfg: CellsConfig, mpp: float) -> np.ndarray:
    """Labelled nuclei that seed cells, each no smaller than the smallest cell: the lobes of a segmented
    nucleus (neutrophils, eosinophils) are already one nucleus of one cell."""
    # a seed is at least the smallest cell's size: platelets' purple granules are not nuclei of cells
    return ndi.label(remove_small_objects(nuclei, max_size=int(disk_area_px(cfg.min_diameter_um, mpp))))[0]


def detect_watershed(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    """Cells of a working-scale image of ``mpp`` um/px (level-0 coordinates: working / ``scale``)."""
    problem = stain_problem(rgb)
    if problem:  # no stain to estimate: the fixed vectors decide, as the note says
        cfg = cfg.model_copy(update={"nuclei": "stain"})
    od, total, (glass, dense) = density(rgb, cfg)
    mask = _above(total, glass, cfg, mpp)
    if not mask.any():
        return _noted(CellTable.empty(), problem)
    stained = mask.copy()
    conc = stain_concentrations(od, stain_matrix(cfg.stain, od if cfg.stain == "estimate" else None))
    pale = total > cfg.cytoplasm_fraction * dense
    nuclear = find_nuclei(od, conc, mask & (total > dense), cfg, mpp, pale)
    nuclei = nucleus_seeds(nuclear, cfg, mpp)
    to_nucleus = None
    if nuclei.any():  # the pale cytoplasm of nucleated cells (white cells, squamous cells) belongs to them
        to_nucleus = ndi.distance_transform_edt(nuclei == 0)
        # around a nucleated cell only dense material (and its own pale cytoplasm) is a cell: pale
        # bridges there would join it to the red cells it touches
        near = to_nucleus < (cfg.cytoplasm_reach_um + cfg.typical_diameter_um) / mpp
        mask &= ~near | (total > dense)
        mask |= pale & (to_nucleus < cfg.cytoplasm_reach_um / mpp)
        mask = remove_small_holes(mask, max_size=int(disk_area_px(cfg.typical_diameter_um, mpp)))
    labels, clumps = split_cells(mask, cfg, mpp, nuclei, to_nucleus, total > dense)
    nucleus = (nuclei > 0) & (labels > 0)
    if nuclei.any():
        # the nucleus measured is its chromatin down to the lower cut (the dense cut's nucleus, which seeds
        # and bounds the cell, misses its paler lobes: BCCD pretraining part, nucleus Dice 0.835 -> 0.893),
        # within the nucleated cells only
        nucleated = (labels > 0) & (labels <= int(nuclei.max()))
        nucleus |= find_nuclei(od, conc, stained, cfg, mpp, pale) & nucleated
    return _noted(measure_cells(labels, nucleus, conc, mpp, clumps, scale, cfg.contour_tolerance_px,
                                material=stained), problem)


def _noted(cells: CellTable, note: str) -> CellTable:
    if note:
        cells.notes.append(note)
    return cells


def detect_otsu(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    """The plain baseline: Otsu's (two-class) threshold on optical density and connected components (no
    hole filling beyond the same, no splitting); debris below ``min_diameter_um`` dropped."""
    mask, od = stained_mask(rgb, cfg, mpp, cut="dense")
    if not mask.any():
        return CellTable.empty()
    labels, _ = ndi.label(mask)
    labels = drop_small(labels, disk_area_px(cfg.min_diameter_um, mpp))
    conc = stain_concentrations(od, stain_matrix(cfg.stain if cfg.stain != "estimate" else "giemsa"))
    nucleus = nuclear_mask(conc, labels > 0, cfg, mpp)
    return measure_cells(labels, nucleus, conc, mpp, set(), scale, cfg.contour_tolerance_px)
