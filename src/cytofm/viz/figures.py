"""Figures people read: attention overlays with colour bars, per-head maps, MIL heatmaps, patch galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def paint_patches(shape: tuple[int, int], coords, size: int, values, smooth: bool = True) -> np.ndarray:
    """A (H, W) map with each patch's value at its place: overlapping patches are averaged when
    ``smooth``, else the later patch wins; pixels under no patch are NaN."""
    h, w = shape
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    for (x, y), v in zip(np.asarray(coords, dtype=np.int64), np.asarray(values, dtype=np.float64),
                         strict=True):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
        if x1 <= x0 or y1 <= y0:
            continue
        if smooth:
            acc[y0:y1, x0:x1] += v
            cnt[y0:y1, x0:x1] += 1
        else:
            acc[y0:y1, x0:x1] = v
            cnt[y0:y1, x0:x1] = 1
    out = np.full((h, w), np.nan)
    np.divide(acc, cnt, out=out, where=cnt > 0)
    return out


def _draw_outlines(ax, rings, color="lime"):
    from matplotlib.patches import Polygon

    for ring in rings or []:
        ax.add_patch(Polygon(ring, closed=True, fill=False, edgecolor=color, linewidth=1.5))


HEAT_ALPHA = 0.6
NOT_KEPT = (0.5, 0.5, 0.5)
NOT_KEPT_ALPHA = 0.75
"""Pixels under no kept patch (background the preparation dropped): dimmed grey, so that bare glass is never
read as the brightest (most attended) part of an overlay."""


def compose_overlay(rgb: np.ndarray, heat: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """The overlay as shown, as a float (H, W, 3) image in [0, 1]: the heat map's colours over the image at
    ``HEAT_ALPHA`` where it is defined, the ``NOT_KEPT`` grey at ``NOT_KEPT_ALPHA`` where it is NaN."""
    import matplotlib

    img = np.asarray(rgb, dtype=np.float64)[..., :3] / 255.0
    ok = np.isfinite(heat)
    out = img * (1 - NOT_KEPT_ALPHA) + np.asarray(NOT_KEPT) * NOT_KEPT_ALPHA
    if ok.any():
        lo, hi = float(np.nanmin(heat)), float(np.nanmax(heat))
        norm = np.clip((heat - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(heat)
        colours = matplotlib.colormaps[cmap](np.nan_to_num(norm))[..., :3]
        out[ok] = img[ok] * (1 - HEAT_ALPHA) + colours[ok] * HEAT_ALPHA
    return out


def overlay_png(rgb: np.ndarray, heat: np.ndarray, path: str | Path, title: str, cbar_label: str,
                outlines=None, subtitle: str = "") -> Path:
    """Image and heat map side by side; the overlay has a colour bar (and, where patches were not kept, a
    legend for their grey); the annotated regions (closed rings in pixels, ``region_outlines``) outlined
    on both."""
    import matplotlib
    from matplotlib.patches import Patch

    plt = _plt()
    h, w = rgb.shape[:2]
    fig_w = 9.0
    fig_h = max(2.8, fig_w / 2 * h / max(w, 1) + 0.9)
    fig, axes = plt.subplots(1, 2, figsize=(fig_w, fig_h), dpi=110, constrained_layout=True)
    axes[0].imshow(rgb)
    axes[0].set_title("image" + (" (green: annotated object)" if outlines else ""), fontsize=9)
    axes[1].imshow(compose_overlay(rgb, heat))
    finite = np.isfinite(heat)
    lo, hi = (float(np.nanmin(heat)), float(np.nanmax(heat))) if finite.any() else (0.0, 1.0)
    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(lo, hi), cmap="inferno")
    if not finite.all():
        grey = (*NOT_KEPT, NOT_KEPT_ALPHA)
        axes[1].legend(handles=[Patch(facecolor=grey, edgecolor="none", label="not kept (background)")],
                       loc="lower right", fontsize=7, framealpha=0.8)
    axes[1].set_title(subtitle or "attention", fontsize=9)
    for ax in axes:
        _draw_outlines(ax, outlines)
        ax.set_xticks([])
        ax.set_yticks([])
    cb = fig.colorbar(sm, ax=axes[1], fraction=0.046, pad=0.02)
    cb.set_label(cbar_label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def heads_png(rgb: np.ndarray, heads: np.ndarray, path: str | Path, title: str) -> Path:
    """One small map per attention head (each scaled to its own range) next to the image."""
    plt = _plt()
    n = heads.shape[0] + 1
    cols = min(n, 7)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows + 0.4), dpi=110, squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(rgb)
    axes.flat[0].set_title("image", fontsize=8)
    for k in range(heads.shape[0]):
        axes.flat[k + 1].imshow(heads[k], cmap="inferno")
        axes.flat[k + 1].set_title(f"head {k}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def gallery_png(rgb: np.ndarray, coords, size: int, weights, path: str | Path, title: str,
                k: int = 6) -> Path:
    """The ``k`` most and least attended patches with their attention weights."""
    plt = _plt()
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-w)
    k = max(1, min(k, len(w) // 2 if len(w) > 1 else 1))
    picks = [("top", order[:k]), ("bottom", order[::-1][:k])]
    fig, axes = plt.subplots(2, k, figsize=(1.5 * k + 0.6, 3.6), dpi=110, squeeze=False,
                             constrained_layout=True)
    c = np.asarray(coords, dtype=np.int64)
    for r, (name, idx) in enumerate(picks):
        for j in range(k):
            ax = axes[r, j]
            ax.axis("off")
            if j >= len(idx):
                continue
            x, y = c[idx[j]]
            ax.imshow(rgb[max(y, 0):y + size, max(x, 0):x + size])
            ax.set_title(f"{name} {j + 1}: {w[idx[j]]:.3f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
