"""Grid tiling in level-0 pixel coordinates."""

from __future__ import annotations

import numpy as np


def grid_positions(length: int, size: int, stride: int, edge: str = "shift") -> np.ndarray:
    """Start offsets of patches of ``size`` along an axis of ``length`` pixels.

    With ``edge="shift"`` a last patch flush with the border is added when the grid leaves a
    remainder, so every pixel is covered (the last two patches overlap); ``"drop"`` leaves the
    remainder out, as CLAM does. An axis shorter than a patch has no positions.
    """
    if length < size or size <= 0 or stride <= 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.arange(0, length - size + 1, stride, dtype=np.int64)
    if edge == "shift" and pos[-1] + size < length:
        pos = np.append(pos, length - size)
    return pos


def grid_coords(width: int, height: int, size: int, stride: int, edge: str = "shift") -> np.ndarray:
    """(N, 2) top-left ``(x, y)`` of the patch grid, row-major."""
    xs = grid_positions(width, size, stride, edge)
    ys = grid_positions(height, size, stride, edge)
    if len(xs) == 0 or len(ys) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)
