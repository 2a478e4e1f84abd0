"""Foreground (cell) finding for sparse cytology preparations.

A smear or liquid-based preparation is mostly empty, bright background. Optical density (OD)
relative to the background brightness of the same image separates any absorbing stain
(Papanicolaou, Giemsa/Diff-Quik, H&E) from glass, and chroma (saturation) catches pale but coloured
cytoplasm. Both thresholds come from Otsu's method on the image itself, floored so that a blank
field stays blank, then morphological clean-up removes dust and fills cells.

References:
    Ruifrok & Johnston, "Quantification of histochemical staining by color deconvolution", 2001
    (optical density of brightfield stains); Otsu, "A threshold selection method from gray-level
    histograms", 1979.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cytofm.data.prepare.config import ForegroundConfig


@dataclass
class ForegroundResult:
    mask: np.ndarray  # bool (h, w) at the working scale
    od_threshold: float
    sat_threshold: float
    background: np.ndarray  # (3,) estimated background intensity


def background_intensity(rgb: np.ndarray, min_background: float = 200.0) -> np.ndarray:
    """Per-channel brightness of the empty glass: the median of the brightest tenth of pixels.

    Clamped from below so that an image filled by one dense cell is not taken as its own background.
    A regular subsample of at most ~250k pixels is plenty for two percentiles.
    """
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))
    flat = rgb[::step, ::step].reshape(-1, 3).astype(np.float32)
    lum = flat.mean(axis=1)
    bright = flat[lum >= np.percentile(lum, 90)]
    bg = np.percentile(bright, 50, axis=0)
    return np.clip(bg, min_background, 255.0)


def optical_density(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """OD = -log10((I + 1) / (I0 + 1)) per channel, clipped at 0 (pixels brighter than the background)."""
    od = -np.log10((rgb.astype(np.float32) + 1.0) / (background.astype(np.float32) + 1.0))
    return np.clip(od, 0.0, None)


def max_optical_density(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-pixel maximum OD over channels, via a 256-entry table per channel (no float image)."""
    levels = np.arange(256, dtype=np.float32)[None, :]
    lut = np.clip(-np.log10((levels + 1.0) / (background.astype(np.float32)[:, None] + 1.0)), 0, None)
    return np.maximum(np.maximum(lut[0][rgb[..., 0]], lut[1][rgb[..., 1]]), lut[2][rgb[..., 2]])


def _channel_max_min(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1]."""
    mx, mn = _channel_max_min(rgb)
    mx = mx.astype(np.float32)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1.0), 0.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of the histogram."""
    v = values.ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-6:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][np.argmax(between[:-1])]) if len(between) > 1 else float(centers[0])


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def clean_mask(mask: np.ndarray, close_px: int, min_object_px: int) -> np.ndarray:
    """Close gaps inside cells, fill nuclei/cytoplasm holes, drop specks smaller than a cell part."""
    if close_px > 0:
        pad = close_px + 1  # closing must not erode at the border
        mask = np.pad(mask, pad, mode="edge")
        mask = ndi.binary_closing(mask, structure=_disk(close_px))[pad:-pad, pad:-pad]
    mask = ndi.binary_fill_holes(mask)
    if min_object_px > 1 and mask.any():
        labels, n = ndi.label(mask)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_object_px
        keep[0] = False
        mask = keep[labels]
    return mask


def find_foreground(rgb: np.ndarray, cfg: ForegroundConfig) -> ForegroundResult:
    """Foreground mask of an RGB uint8 image (already at the working scale).

    With fixed thresholds the tests reduce to integer comparisons per channel
    (OD_c > t  <=>  I_c < (I0_c + 1) 10^-t - 1; saturation > s  <=>  max - min > s max).
    """
    bg = background_intensity(rgb, cfg.min_background)
    if cfg.method == "none":
        return ForegroundResult(np.ones(rgb.shape[:2], bool), 0.0, 0.0, bg)
    mask = np.zeros(rgb.shape[:2], bool)
    t_od = t_sat = float("inf")
    if "od" in cfg.method:
        if cfg.od_threshold is not None:
            t_od = cfg.od_threshold
            limit = (bg + 1.0) * 10.0 ** (-t_od) - 1.0  # OD > t  <=>  I < limit
            for c in range(3):
                mask |= rgb[..., c] < limit[c]
        else:
            od = max_optical_density(rgb, bg)
            t_od = max(cfg.od_min, otsu_threshold(od))
            mask |= od > t_od
    if "saturation" in cfg.method:
        mx, mn = _channel_max_min(rgb)
        if cfg.sat_threshold is not None:
            t_sat = cfg.sat_threshold
            chroma = mx.astype(np.int16) - mn
            sat_mask = chroma > t_sat * mx
        else:
            sat = saturation(rgb)
            t_sat = max(cfg.sat_min, otsu_threshold(sat))
            sat_mask = sat > t_sat
        # saturation is meaningless on near-black pixels; those are caught by OD anyway
        mask |= sat_mask & (mx > 30)
    mask = clean_mask(mask, cfg.close_px, cfg.min_object_px)
    return ForegroundResult(mask, float(t_od), float(t_sat), bg)


def box_fractions(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``mask`` inside each box (x0, y0, x1, y1) in mask pixels, via an integral image.

    Boxes are clipped to the mask; a box with no area inside it scores 0.
    """
    h, w = mask.shape
    ii = np.zeros((h + 1, w + 1), np.float64)
    ii[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.clip(np.floor(b[:, 0]), 0, w).astype(int)
    y0 = np.clip(np.floor(b[:, 1]), 0, h).astype(int)
    x1 = np.clip(np.ceil(b[:, 2]), 0, w).astype(int)
    y1 = np.clip(np.ceil(b[:, 3]), 0, h).astype(int)
    area = (x1 - x0) * (y1 - y0)
    s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return np.where(area > 0, s / np.maximum(area, 1), 0.0)
