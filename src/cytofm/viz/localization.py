"""How well attention finds the annotated object: attention mass inside it and the pointing game
(Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016).

Both are computed for patch-level MIL attention (each patch's weight spread evenly over its pixels) and for
pixel maps. Each score comes with its chance level, the same score for uniform attention over the same
patches, because a large object gets a high mass from any map. The object is a union of VOC boxes or of
QuPath polygons: boxes through a pixel mask as always, polygons by their own area (patch-polygon
intersections, point in polygon), since a level-0 mask of a whole slide would not fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytofm.data.annotations.regions import is_box, points_inside, region_union, regions_mask


def boxes_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """Union of [xmin, ymin, xmax, ymax] boxes as a boolean (H, W) mask."""
    m = np.zeros(shape, bool)
    for b in boxes:
        x0, y0, x1, y1 = (int(round(float(v))) for v in b)
        m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


@dataclass(frozen=True)
class RegionTarget:
    """Annotated polygons (one shapely geometry, level-0 pixels) over an image of ``shape`` (H, W)."""

    region: object
    shape: tuple[int, int]


def localisation_target(regions, shape: tuple[int, int]) -> np.ndarray | RegionTarget:
    """What :func:`patch_scores` scores against: the boxes' mask when every region is a box (the VOC
    scores as they always were), else the regions as one geometry."""
    if all(is_box(r) for r in regions):
        return boxes_mask(regions, shape)
    return RegionTarget(region_union(regions), tuple(shape))


def pixel_target(regions, shape: tuple[int, int]) -> np.ndarray:
    """The regions as a pixel mask for :func:`map_scores` (polygons by pixel centre)."""
    return regions_mask(regions, shape)


def _region_fraction(target: RegionTarget, coords: np.ndarray, size: int) -> np.ndarray:
    """Share of each patch's area (clipped to the image) inside the polygons, by exact intersection."""
    import shapely

    h, w = target.shape
    c = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    x0, y0 = np.maximum(c[:, 0], 0), np.maximum(c[:, 1], 0)
    x1, y1 = np.minimum(c[:, 0] + size, w), np.minimum(c[:, 1] + size, h)
    ok = (x1 > x0) & (y1 > y0)
    out = np.zeros(len(c))
    if ok.any() and not target.region.is_empty:
        boxes = shapely.box(x0[ok], y0[ok], x1[ok], y1[ok])
        inside = shapely.area(shapely.intersection(boxes, target.region))
        out[ok] = inside / ((x1 - x0) * (y1 - y0))[ok]
    return out


def _inside_fraction(mask: np.ndarray, coords: np.ndarray, size: int) -> np.ndarray:
    """Share of each patch's area (clipped to the image) that lies on the mask."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = mask.shape
    out = np.zeros(len(coords))
    for i, (x, y) in enumerate(np.asarray(coords, dtype=np.int64)):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
        if x1 <= x0 or y1 <= y0:
            continue
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        out[i] = inside / ((x1 - x0) * (y1 - y0))
    return out


def patch_scores(weights, coords, size: int, mask: np.ndarray) -> dict:
    """Localisation of patch attention ``weights`` (summing to 1) at ``coords`` against ``mask`` (a boolean
    (H, W) mask or a :class:`RegionTarget`; see :func:`localisation_target`).

    ``mass``: sum of weights x the share of each patch on the object; ``hit``: the top patch's centre lies
    on the object; ``chance_mass`` / ``chance_hit``: the same for equal weights (the expected hit of a
    randomly chosen patch).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("attention weights sum to zero")
    w = w / w.sum()
    c = np.asarray(coords, dtype=np.int64)
    cy = np.clip(c[:, 1] + size // 2, 0, mask.shape[0] - 1)
    cx = np.clip(c[:, 0] + size // 2, 0, mask.shape[1] - 1)
    if isinstance(mask, RegionTarget):  # the centre pixel's centre, as a mask would sample it
        frac = _region_fraction(mask, coords, size)
        centre_in = points_inside(mask.region, cx + 0.5, cy + 0.5)
    else:
        frac = _inside_fraction(mask, coords, size)
        centre_in = mask[cy, cx]
    return {"mass": float((w * frac).sum()), "hit": bool(centre_in[int(np.argmax(w))]),
            "chance_mass": float(frac.mean()), "chance_hit": float(centre_in.mean())}


def map_scores(heat: np.ndarray, mask: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """Localisation of a non-negative pixel map against ``mask`` (same shape); ``valid`` limits both
    the map and the chance level to the pixels that were seen."""
    if heat.shape != mask.shape:
        raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in shape")
    v = np.ones_like(mask, bool) if valid is None else valid
    hm = np.where(v, np.clip(heat, 0, None), 0.0)
    if hm.sum() <= 0:
        raise ValueError("attention map sums to zero")
    top = np.unravel_index(int(np.argmax(hm)), hm.shape)
    return {"mass": float(hm[mask].sum() / hm.sum()), "hit": bool(mask[top]),
            "chance_mass": float((mask & v).sum() / v.sum()), "chance_hit": float((mask & v).sum() / v.sum())}


def _num(v) -> float:
    """A score from a dict or a CSV cell ('True'/'False' for hits)."""
    if isinstance(v, str) and v in ("True", "False"):
        return float(v == "True")
    return float(v)


def summarise(rows: list[dict]) -> dict:
    """Means over items (dicts or CSV rows): mass, pointing-game hit rate and their chance levels."""
    if not rows:
        return {}
    keys = ("mass", "hit", "chance_mass", "chance_hit")
    return {"n": len(rows), **{k: float(np.mean([_num(r[k]) for r in rows])) for k in keys}}
