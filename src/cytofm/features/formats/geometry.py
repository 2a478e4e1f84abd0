"""Patch geometry as TRIDENT and CLAM read it from the ``coords`` dataset's attributes.

Everything follows from four facts of a store item: the level-0 resolution (``mpp``), the patch side at
level 0 (``patch_size_level0``), the side the encoder's input was cut to (``patch_size``, pixels at the
target resolution) and the patch grid (for the overlap). Magnification uses the convention of
``cytofm prepare`` (and of TRIDENT's readers): 10x = 1 um/px, so 0.25 um/px is 40x.
"""

from __future__ import annotations

import math

import numpy as np

# attributes written on ``coords`` (TRIDENT: patch_size, patch_size_level0, level0_magnification,
# target_magnification, overlap; CLAM: patch_size, patch_level, custom_downsample)
COORDS_ATTRS = ("patch_size", "patch_size_level0", "patch_level", "level0_magnification",
                "target_magnification", "custom_downsample", "overlap")


def magnification(mpp: float | None) -> float:
    """Objective magnification of a resolution (10 / mpp); NaN when the resolution is unknown."""
    return round(10.0 / mpp, 6) if mpp and math.isfinite(mpp) and mpp > 0 else float("nan")


def grid_step(coords: np.ndarray) -> int | None:
    """The most common positive step between neighbouring grid columns/rows (level-0 px), if any."""
    steps: list[int] = []
    for axis in (0, 1):
        d = np.diff(np.unique(np.asarray(coords)[:, axis])) if len(coords) else np.zeros(0)
        steps += [int(v) for v in d if v > 0]
    if not steps:
        return None
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def geometry(mpp: float | None, size0: int, size: int, coords: np.ndarray) -> dict:
    """The ``coords`` attributes of an item whose patches are ``size0`` level-0 px cut to ``size`` px."""
    size0, size = int(size0), int(size)
    down = size0 / size if size > 0 and size0 > 0 else float("nan")
    step = grid_step(coords)
    overlap0 = max(0, size0 - step) if step is not None else 0
    mag0 = magnification(mpp)
    return {
        "patch_size": size,
        "patch_size_level0": size0,
        "patch_level": 0,
        "level0_magnification": mag0,
        "target_magnification": round(mag0 / down, 6) if math.isfinite(mag0) and down else float("nan"),
        "custom_downsample": round(down, 6),
        "overlap": int(round(overlap0 / down)) if math.isfinite(down) else 0,
    }


def whole_size(path, kind: str) -> int | None:
    """The longer side of a whole image (its field of view), from the header where its kind has one; None
    if unreadable."""
    from cytofm.data.sources.kinds import INPUT_KINDS

    try:
        return max(INPUT_KINDS.get(kind).whole_size(path))
    except Exception:  # noqa: BLE001 - an unreadable item is reported by extraction itself
        return None


def extract_attrs(item) -> dict:
    """The ``coords`` attributes of an extraction item (``features.items.ExtractItem``).

    Tiles: the prepared patch geometry. Image mode: the whole image is the instance, at its own
    resolution (``patch_size == patch_size_level0`` = its longer side, never 0), or the square field it was
    read as at one physical scale (``size0``).
    """
    if item.whole and item.size0:
        return geometry(item.mpp, item.size0, item.size0, item.coords)
    if item.whole or not item.size0:
        side = whole_size(item.path, item.kind) or 0
        return geometry(item.mpp, side, side, item.coords)
    return geometry(item.mpp, item.size0, item.out_size or item.size0, item.coords)
