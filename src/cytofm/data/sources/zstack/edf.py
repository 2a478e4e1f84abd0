"""Extended depth of field: the planes of a z-stack fused into one image that is sharp everywhere.

Per pixel, each plane's local focus energy (a band-pass of the log intensity, squared and smoothed)
says which plane is sharpest there; that one-hot choice is smoothed into weights that sum to one and the
planes are blended with them. Where one plane is sharp the result is that plane; where the choice changes
the weights change gradually, so no seam. Every output pixel depends only on input within ``MARGIN_PX``,
so a region is fused from a read that much larger and cropped: the same pixels whatever region they were
read in, and patches fused apart join without a seam. Libraries fuse whole images in memory (wavelet or
pyramid EDF in ImageJ plug-ins, mahotas' per-pixel argmax without blending), not regions of a slide;
hence this module, on scipy's filters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BAND_FINE_PX = 1.0
BAND_COARSE_PX = 3.0
ENERGY_PX = 4.0  # the neighbourhood whose energy decides a pixel's plane
BLEND_PX = 4.0  # the width over which the choice of plane changes
TRUNCATE = 4.0  # scipy's default: a Gaussian filter reaches int(4 sigma + 0.5) pixels
MARGIN_PX = sum(int(TRUNCATE * s + 0.5) for s in (BAND_COARSE_PX, ENERGY_PX, BLEND_PX))


def focus_energy(rgb: np.ndarray) -> np.ndarray:
    """(H, W) local fine-detail energy of one plane: the band-pass of log intensity, squared, smoothed.
    Log intensity is optical density up to a constant, which the band-pass removes: no glass level needed."""
    from scipy import ndimage

    lg = np.log(rgb.astype(np.float32).sum(-1) + 3.0)
    band = ndimage.gaussian_filter(lg, BAND_FINE_PX) - ndimage.gaussian_filter(lg, BAND_COARSE_PX)
    return ndimage.gaussian_filter(band * band, ENERGY_PX)


def fuse(planes: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """(P, H, W, 3) uint8 planes of one region -> (H, W, 3) uint8 fused; exact only ``MARGIN_PX`` in
    from the region's edges (see :func:`fused_region`)."""
    from scipy import ndimage

    energy = np.stack([focus_energy(p) for p in planes])
    pick = energy.argmax(0)  # ties (blank glass): the first plane, the same in every read
    out = np.zeros(np.shape(planes[0]), np.float32)
    for z, p in enumerate(planes):
        w = ndimage.gaussian_filter((pick == z).astype(np.float32), BLEND_PX)
        out += w[..., None] * p
    return out.round().clip(0, 255).astype(np.uint8)


def fused_region(read_plane: Callable[[int, int, int, int, int], np.ndarray], n_planes: int, x: int, y: int,
                 w: int, h: int) -> np.ndarray:
    """The fused region at level-0 ``(x, y)``, ``w`` x ``h``: ``read_plane(z, x, y, w, h)`` read with the
    margin, fused, cropped. One region of every plane is held, never a plane."""
    m = MARGIN_PX
    planes = [read_plane(z, x - m, y - m, w + 2 * m, h + 2 * m) for z in range(n_planes)]
    return fuse(planes)[m:m + h, m:m + w]

