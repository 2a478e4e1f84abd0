"""The focus of a source's kept patches (``foreground.focus``, ``min_focus``), read as they are embedded; for
a z-stack, the plane each patch is read from, chosen by the plane policy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.tiles import Tiles
from cytofm.data.sources.inputs import Skip, SourceItem
from cytofm.data.sources.kinds import INPUT_KINDS


def score_focus(src, item: SourceItem, tiles: Tiles, cfg: PrepareConfig) -> Tiles | Skip:
    """Every kept patch's focus, read as it is embedded (``patch_size`` px at the target resolution); a
    whole image at its own resolution. With ``min_focus``, patches below it are dropped."""
    fg = cfg.foreground
    zstack = INPUT_KINDS.get(item.kind).planes  # planes are chosen by focus: always scored
    if not zstack and (fg.focus == "none" or (fg.focus == "images" and getattr(src, "array", None) is None)):
        if fg.min_focus is not None:
            return Skip(str(item.path), f"min_focus={fg.min_focus:g} needs focus scores, and "
                                        f"foreground.focus={fg.focus} does not score this source's patches "
                                        "(a slide or an image read in regions): set foreground.focus=all")
        return tiles
    out = None if tiles.whole or tiles.target is None else cfg.tiling.patch_size
    if zstack:
        tiles = plane_focus(src, tiles, out)
    else:
        focus, blank = scored(src, tiles, np.flatnonzero(tiles.keep), out)
        tiles = replace(tiles, focus=focus, blank=blank)
    idx, focus, keep = np.flatnonzero(tiles.keep), tiles.focus, tiles.keep
    if fg.min_focus is not None:
        keep = keep & (np.nan_to_num(focus, nan=0.0) >= fg.min_focus)
        if not keep.any():
            return Skip(str(item.path), f"no patch in focus: all {len(idx)} foreground patches below "
                                        f"min_focus={fg.min_focus:g} (median focus "
                                        f"{float(np.median(focus[idx])):.2f})")
    return replace(tiles, keep=keep)


def scored(src, tiles: Tiles, at: np.ndarray, out: int | None, into=None) -> tuple[np.ndarray, np.ndarray]:
    """Focus and blank flags of the candidates ``at`` read from ``src``, into ``into`` (focus, blank) or
    fresh arrays (NaN and False elsewhere)."""
    from cytofm.data.prepare.focus import patch_focus

    n = len(tiles.coords)
    focus, blank = into if into is not None else (np.full(n, np.nan, np.float32), np.zeros(n, bool))
    focus[at], blank[at] = patch_focus(src, tiles.coords[at], tiles.patch_wh, out, tiles.thumb)
    return focus, blank


def plane_focus(src, tiles: Tiles, out: int | None) -> Tiles:
    """A z-stack's patches with their plane and focus: ``best`` each patch's sharpest plane (by the stored
    bytes, or every plane scored: ``zstack.select``), ``all`` each patch once per plane, a plane number or
    ``edf`` scored as read."""
    n, n_planes, policy = len(tiles.coords), src.n_planes, src.policy
    idx = np.flatnonzero(tiles.keep)
    if policy == "edf" or isinstance(policy, int):
        focus, blank = scored(src, tiles, idx, out)
        planes = None if policy == "edf" else np.full(n, policy, np.int64)
        return replace(tiles, focus=focus, blank=blank, planes=planes)
    if policy == "best" and src.select == "bytes":  # the plane chosen from the file's index; it alone read
        z = np.zeros(n, np.int64)
        z[idx] = src.stored_bytes(tiles.coords[idx], tiles.patch_wh).argmax(0)
        focus, blank = np.full(n, np.nan, np.float32), np.zeros(n, bool)
        for k in np.unique(z[idx]):
            scored(src.plane(int(k)), tiles, idx[z[idx] == k], out, (focus, blank))
        return replace(tiles, focus=focus, blank=blank, planes=z)
    per_plane = [scored(src.plane(z), tiles, idx, out) for z in range(n_planes)]
    scores, blank = np.stack([f for f, _ in per_plane]), np.stack([b for _, b in per_plane])
    if policy == "best":
        z = np.nan_to_num(scores, nan=-1.0).argmax(0)
        at = (z, np.arange(n))
        return replace(tiles, focus=scores[at], blank=blank[at], planes=z.astype(np.int64))
    rep = lambda a: np.repeat(a, n_planes, axis=0)  # noqa: E731  every patch once per plane, in plane order
    return replace(tiles, coords=rep(tiles.coords), fracs=rep(tiles.fracs), keep=rep(tiles.keep),
                   focus=scores.T.reshape(-1), blank=blank.T.reshape(-1),
                   planes=np.tile(np.arange(n_planes, dtype=np.int64), n))
