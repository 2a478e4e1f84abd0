"""Cell outlines scored against hand-drawn masks: Dice, and whether one annotated white cell came out as one
detected cell (split) or took in its neighbours (merged).

The outlines scored are the ones ``prepare --cells`` writes (simplified polygons in level-0 pixels), filled
back into pixels, so a score describes what a user receives, not an intermediate mask.
"""

from __future__ import annotations

import numpy as np

SPLIT_SHARE = 0.2
"""A detected cell is a piece of an annotated white cell when it covers at least this share of its box."""
MERGE_SHARE = 0.3
"""A detected white cell is merged with its neighbours when its area outside the annotated box exceeds this
share of the box's area."""


def fill_outlines(outlines: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 label image: outline k (x, y vertices; pixel centres at integers) filled with k + 1.
    Larger outlines first, smaller ones over them: an outline is a cell's outer ring, so a clump that wraps
    around a cell would otherwise cover it. Empty outlines leave no pixels."""
    from skimage.draw import polygon

    labels = np.zeros(shape, np.int32)
    filled = []
    for k, ring in enumerate(outlines):
        if len(ring) >= 3:
            rr, cc = polygon(ring[:, 1], ring[:, 0], shape)
            filled.append((len(rr), k, rr, cc))
    for _, k, rr, cc in sorted(filled, key=lambda f: -f[0]):
        labels[rr, cc] = k + 1
    return labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A & B| / (|A| + |B|) of two boolean masks; 1.0 when both are empty (nothing to find,
    nothing found)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def box_pieces(labels: np.ndarray, box, share: float = SPLIT_SHARE,
               within: np.ndarray | None = None) -> list[int]:
    """Labels of the detected cells covering at least ``share`` of the box (x0, y0, x1, y1, level-0
    pixels, end exclusive). ``within`` (bool, optional): only cells that touch it count (the annotated
    nucleus, so that red cells lying in a corner of a white cell's box are not taken for its pieces)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = labels[max(0, y0):y1, max(0, x0):x1]
    if not crop.size:
        return []
    ids, counts = np.unique(crop[crop > 0], return_counts=True)
    keep = ids[counts >= share * crop.size]
    if within is not None:
        touching = set(np.unique(labels[within & (labels > 0)]).tolist())
        keep = np.array([k for k in keep if int(k) in touching], np.int64)
    return [int(k) for k in keep]


def outside_share(labels: np.ndarray, label: int, box) -> float:
    """Area of detected cell ``label`` outside the box, as a share of the box's area."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cell = labels == label
    inside = int(cell[max(0, y0):y1, max(0, x0):x1].sum())
    return (int(cell.sum()) - inside) / max(1, (x1 - x0) * (y1 - y0))


def white_cell_outcome(labels: np.ndarray, box, nucleus: np.ndarray) -> dict:
    """One annotated white cell (its box and its nucleus mask, level-0 pixels) against the detected cells:
    ``found`` (a detected cell touches its nucleus), ``split`` (two or more detected cells touching the
    nucleus each cover >= 20% of the box), ``merged`` (the detected cell holding most of the nucleus
    reaches outside the box by more than 30% of the box's area), and that cell's label (0: none)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    nuc = np.zeros_like(nucleus, dtype=bool)
    nuc[max(0, y0):y1, max(0, x0):x1] = nucleus[max(0, y0):y1, max(0, x0):x1]
    under = labels[nuc & (labels > 0)]
    if not under.size:
        return {"found": False, "split": False, "merged": False, "label": 0}
    ids, counts = np.unique(under, return_counts=True)
    main = int(ids[np.argmax(counts)])
    return {"found": True, "split": len(box_pieces(labels, box, within=nuc)) >= 2,
            "merged": outside_share(labels, main, box) > MERGE_SHARE, "label": main}
