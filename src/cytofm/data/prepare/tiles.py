"""One source's patch grid: foreground on a thumbnail, the grid (or the whole image) at level 0, and the
patches kept by foreground fraction and region of interest."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cytofm.data.annotations.regions import points_inside
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.foreground import box_fractions, find_foreground
from cytofm.data.prepare.roi import Roi
from cytofm.data.prepare.tiling import grid_coords
from cytofm.data.sources.inputs import Skip, SourceItem
from cytofm.data.sources.kinds import INPUT_KINDS
from cytofm.data.sources.resolution import missing_resolution

MAX_UPSAMPLING = 2.0
"""Resampling that enlarges a source more than this is warned about: up to 2x is the usual step between
scanner objectives (40x read for a 20x-trained model and back); beyond it the patches are mostly
interpolated pixels with no detail of their own, usually a wrong ``--mpp`` or ``--target-mpp``."""


@dataclass
class Tiles:
    """Where a source's patches are: the grid (or the whole image) at level 0 and what the foreground kept."""

    target: float | None  # um/px of the output, None: the source's own
    size0: int  # patch side at level 0
    level: int  # the pyramid level patches are read from
    whole: bool
    coords: np.ndarray  # (N, 2) candidates, level 0
    fracs: np.ndarray  # (N,) foreground fraction of each
    keep: np.ndarray  # (N,) bool
    patch_wh: tuple[int, int]
    thumb: np.ndarray
    scale: float
    mask: np.ndarray
    image_fraction: float
    focus: np.ndarray | None = None  # (N,) focus of every candidate (NaN where not scored), or None
    blank: np.ndarray | None = None  # (N,) bool: no stain structure to score
    planes: np.ndarray | None = None  # (N,) z-stacks: the plane each candidate is read from
    warnings: list[str] = field(default_factory=list)  # said once per source (a resampling that enlarges)

    @property
    def kept(self) -> np.ndarray:
        return self.coords[self.keep]

    @property
    def kept_planes(self) -> list:
        if self.planes is None:
            return [None] * int(self.keep.sum())
        return [int(z) for z in self.planes[self.keep]]


def tile_source(src, item: SourceItem, cfg: PrepareConfig, roi: Roi | None = None) -> Tiles | Skip:
    """Foreground and the patch grid of one source (only patches centred in ``roi`` when given), or why it
    is skipped."""
    t, fg, target = cfg.tiling, cfg.foreground, cfg.resolution.target
    w, h = src.width, src.height
    small = size_refusal(w, h, t.min_side)
    if small:
        return Skip(str(item.path), small)
    if target is not None and src.mpp is None:
        return Skip(str(item.path), missing_resolution(item.path, f"resampling to {target:g} um/px",
                                                       "mpp" in item.meta))
    factor = (target / src.mpp) if target is not None else 1.0  # level-0 px per output px
    warnings = [] if factor * MAX_UPSAMPLING >= 1 else [
        f"resampling {src.mpp:g} um/px to {target:g} um/px enlarges it {1 / factor:.3g}x (more than "
        f"{MAX_UPSAMPLING:g}x: interpolated pixels, no new detail); check --mpp and --target-mpp"]
    size0 = max(1, round(t.patch_size * factor))
    stride0 = max(1, round((t.stride or t.patch_size) * factor))
    thumb, scale = src.thumbnail(fg.mask_max_side)
    mask = find_foreground(thumb, fg).mask
    image_fraction = float(mask.mean())
    whole = t.mode == "whole" or (w < size0 or h < size0)
    if whole and t.mode != "whole" and not t.keep_small_whole:
        return Skip(str(item.path), f"image {w}x{h} is smaller than one patch ({size0} px at level 0)")
    if whole:
        coords, fracs, patch_wh = np.zeros((1, 2), np.int64), np.array([image_fraction], np.float32), (w, h)
    else:
        coords = grid_coords(w, h, size0, stride0, t.edge)
        boxes = np.concatenate([coords, coords + size0], axis=1) * scale
        fracs, patch_wh = box_fractions(mask, boxes).astype(np.float32), (size0, size0)
    keep = fracs >= fg.min_fraction
    if not keep.any():
        what = "the image" if whole else f"all {len(coords)} patches"
        return Skip(str(item.path), f"no foreground: {what} below min_fraction={fg.min_fraction:g} "
                                    f"(image foreground {image_fraction:.3f})")
    if roi is not None:
        inside = points_inside(roi.geometry, coords[:, 0] + patch_wh[0] / 2, coords[:, 1] + patch_wh[1] / 2)
        if not (keep & inside).any():
            return Skip(str(item.path), f"no foreground patch has its centre inside the ROI "
                                        f"({roi.path.name}): all {int(keep.sum())} lie outside")
        keep &= inside
    level = src.best_level(factor) if INPUT_KINDS.get(item.kind).pyramid and factor > 1 else 0
    return Tiles(target, size0, level, whole, coords, fracs, keep, patch_wh, thumb, scale, mask,
                 image_fraction, warnings=warnings)


def size_refusal(width: int, height: int, min_side: int) -> str:
    """Why an image is too small to be a source ('' when it is not): one rule for ``prepare`` and for
    ``extract`` of images it did not prepare."""
    if min(width, height) < min_side:
        return f"image {width}x{height} is too small (a side below min_side={min_side} px)"
    return ""
