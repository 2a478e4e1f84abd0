"""QA thumbnails: the source with its kept patches outlined, to check foreground finding by eye."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def qa_thumbnail(thumb: np.ndarray, scale: float, coords: np.ndarray, size0: int | tuple[int, int],
                 kept: np.ndarray, mask: np.ndarray | None = None) -> Image.Image:
    """Kept patches in green, dropped ones faint red, the foreground mask tinted blue."""
    base = thumb.astype(np.float32)
    if mask is not None and mask.shape == thumb.shape[:2]:
        base[mask] = base[mask] * 0.7 + np.array([0, 60, 255], np.float32) * 0.3
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im, "RGBA")
    sw, sh = (size0, size0) if isinstance(size0, int) else size0
    for (x, y), k in zip(coords, kept, strict=True):
        box = [x * scale, y * scale, (x + sw) * scale - 1, (y + sh) * scale - 1]
        if k:
            draw.rectangle(box, outline=(0, 200, 0, 255), width=max(1, round(max(im.size) / 400)))
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
