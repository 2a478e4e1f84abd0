"""A focus score for a patch or a cell that does not rise or fall with the amount of stain.

Defocus is a blur, and a blur takes energy from fine scales first. The score is the ratio of the gradient
energy of the optical-density image at a fine scale to that at a coarse one,

    focus = (E(s_fine) / E(s_coarse) - 1) / (s_coarse / s_fine - 1),   E(s) = mean |grad (G_s * OD)|^2

For a step edge E(s) is proportional to 1/s, so an edge blurred by a Gaussian of width b scores
(sqrt((s_c^2 + b^2) / (s_f^2 + b^2)) - 1) / (s_c/s_f - 1): 1 for a perfect edge in the continuum (0.73 on
pixels), 0.20 at b = 2 px, falling monotonically towards 0 (s_f = 0.6 px, s_c = 4 px: the finest scale the
pixels carry, which tells a 1 px blur from none on oversampled fields). Optical density is linear in the
amount of stain (Beer-Lambert), and more stain (or more cells) scales both energies alike, so the ratio is
unchanged by it; the variance of a
Laplacian or Tenengrad energy, the usual scores, grow with it. No library scores focus this way (skimage
and OpenCV give the raw energies), hence this module; the filters are scipy's.

A patch with too little stain structure (its smoothed optical density spans less than ``blank_od``) has
no meaningful score: it gets 0 and is marked blank, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINE_PX = 0.6
COARSE_PX = 4.0
BLANK_OD = 0.05


@dataclass(frozen=True)
class FocusMaps:
    """Per-pixel gradient energies of one image at the two scales, and its smoothed optical density."""

    fine: np.ndarray  # (H, W) float32 |grad G_fine * OD|^2
    coarse: np.ndarray  # |grad G_coarse * OD|^2
    smooth: np.ndarray  # G_coarse * OD


def summed_od(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Optical density summed over the channels (float32), through a 256-entry table per channel."""
    levels = np.arange(256, dtype=np.float32)[None, :]
    lut = np.clip(-np.log10((levels + 1.0) / (np.asarray(background, np.float32)[:, None] + 1.0)), 0, None)
    return lut[0][rgb[..., 0]] + lut[1][rgb[..., 1]] + lut[2][rgb[..., 2]]


def focus_maps(rgb: np.ndarray, background: np.ndarray, fine: float = FINE_PX,
               coarse: float = COARSE_PX) -> FocusMaps:
    from scipy import ndimage

    od = summed_od(rgb, background)
    ef = _gradient_energy(ndimage.gaussian_filter(od, fine))
    smooth = ndimage.gaussian_filter(od, coarse)
    return FocusMaps(ef, _gradient_energy(smooth), smooth)


def _gradient_energy(smooth: np.ndarray) -> np.ndarray:
    """|grad|^2 by central differences: on an image already smoothed at >= 1 px they are as good as
    Gaussian derivatives, at a fifth of the cost."""
    if min(smooth.shape) < 2:
        return np.zeros_like(smooth)
    gy, gx = np.gradient(smooth)
    return gx * gx + gy * gy


def box_focus(maps: FocusMaps, boxes: np.ndarray, fine: float = FINE_PX, coarse: float = COARSE_PX,
              blank_od: float = BLANK_OD) -> tuple[np.ndarray, np.ndarray]:
    """Focus and blank flag of each box ``(x0, y0, x1, y1)`` (pixels of the maps' image, clipped to it).
    Sums over slices, not integral images: a slide region's cells would need four float64 images."""
    h, w = maps.fine.shape
    b = np.asarray(boxes, np.int64).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    score, blank = np.zeros(len(b), np.float32), np.ones(len(b), bool)
    for k, (x0, y0, x1, y1) in enumerate(b):
        if x1 <= x0 or y1 <= y0:
            continue
        ef = float(maps.fine[y0:y1, x0:x1].sum(dtype=np.float64))
        ec = float(maps.coarse[y0:y1, x0:x1].sum(dtype=np.float64))
        spread = 4.0 * float(maps.smooth[y0:y1, x0:x1].std(dtype=np.float64))  # about a smooth signal's range
        if spread >= blank_od and ec > 0:
            score[k], blank[k] = (ef / ec - 1.0) / (coarse / fine - 1.0), False
    return score, blank


def focus_score(rgb: np.ndarray, background: np.ndarray | None = None) -> tuple[float, bool]:
    """One image's (a patch's, a cell crop's) focus and whether it is blank; the glass brightness is
    estimated from the image when not given (a patch full of cells needs the source's)."""
    from cytofm.data.prepare.foreground import background_intensity

    bg = background_intensity(rgb) if background is None else background
    h, w = rgb.shape[:2]
    s, blank = box_focus(focus_maps(rgb, bg), np.array([[0, 0, w, h]]))
    return float(s[0]), bool(blank[0])


def patch_focus(src, coords: np.ndarray, size0: tuple[int, int], out: int | None,
                thumb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Focus and blank flag of patches of a source (level-0 top-left ``coords``, ``size0`` wide), each
    read as it is embedded (``out`` px a side; None: at level 0). An image held in memory at its own
    resolution is scored in one pass over the image; other patches one by one. The glass brightness comes
    from the whole source (``thumb``), since a patch full of cells has no glass of its own."""
    from cytofm.data.prepare.foreground import background_intensity

    bg = background_intensity(thumb)
    sw, sh = size0
    if out is None and getattr(src, "array", None) is not None:
        boxes = np.concatenate([coords, coords + np.array([sw, sh])], axis=1)
        return box_focus(focus_maps(src.array, bg), boxes)
    scores, blank = np.zeros(len(coords), np.float32), np.zeros(len(coords), bool)
    for k, (x, y) in enumerate(coords):
        rgb = src.read(int(x), int(y), (sw, sh), out)
        scores[k], blank[k] = focus_score(rgb, bg)
    return scores, blank
