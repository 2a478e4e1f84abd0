"""QA thumbnails: the source with its kept patches outlined, to check foreground finding by eye."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def qa_thumbnail(thumb: np.ndarray, scale: float, coords: np.ndarray, size0: int | tuple[int, int],
                 kept: np.ndarray, mask: np.ndarray | None = None, focus: np.ndarray | None = None,
                 min_focus: float | None = None) -> Image.Image:
    """Kept patches in green (yellow where their focus is under half the source's median: the blurred
    ones), dropped ones faint red (orange: dropped for focus below ``min_focus``), the foreground mask
    tinted blue."""
    base = thumb.astype(np.float32)
    if mask is not None and mask.shape == thumb.shape[:2]:
        base[mask] = base[mask] * 0.7 + np.array([0, 60, 255], np.float32) * 0.3
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im, "RGBA")
    sw, sh = (size0, size0) if isinstance(size0, int) else size0
    f = np.full(len(coords), np.nan) if focus is None else np.asarray(focus, np.float64)
    soft = 0.5 * float(np.nanmedian(f[kept])) if np.isfinite(f[kept]).any() else -np.inf
    for (x, y), k, fk in zip(coords, kept, f, strict=True):
        box = [x * scale, y * scale, (x + sw) * scale - 1, (y + sh) * scale - 1]
        if k:
            colour = (230, 200, 0, 255) if fk < soft else (0, 200, 0, 255)
            draw.rectangle(box, outline=colour, width=max(1, round(max(im.size) / 400)))
        elif min_focus is not None and np.isfinite(fk) and fk < min_focus:
            draw.rectangle(box, outline=(255, 120, 0, 220), width=1)
        else:
            draw.rectangle(box, outline=(220, 0, 0, 160), width=1)
    return im


def draw_cells(im: Image.Image, cells, scale: float) -> Image.Image:
    """Detected cells over a QA thumbnail (level-0 coordinates times ``scale``): outlines in cyan (clumps
    in orange), nuclei in magenta."""
    draw = ImageDraw.Draw(im, "RGBA")
    width = max(1, round(max(im.size) / 600))
    for contour, nucleus, clump in zip(cells.contour, cells.nucleus, cells.clump, strict=True):
        for ring, colour in ((contour, (255, 140, 0, 255) if clump else (0, 220, 255, 255)),
                             (nucleus, (255, 0, 200, 255))):
            if len(ring) >= 2:
                pts = [tuple(p) for p in (np.asarray(ring) * scale).tolist()]
                draw.line(pts + [pts[0]], fill=colour, width=width)
    return im
