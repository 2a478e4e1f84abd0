"""``cytofm prepare``: sources -> foreground patch coordinates, a dataset manifest and QA images.

Output layout (``OUT``):
    manifest.csv       one row per usable source: id, path, coords (h5, relative), size, mpp, patch
                       geometry, counts, conversion, and every label/metadata column of the input
    coords/<id>.h5     ``coords`` (N, 2) level-0 top-left (x, y), ``foreground`` (N,) fractions, ``focus``
                       and ``focus_blank`` when scored, ``z`` (N,) the plane of each patch of a z-stack;
                       attributes as CLAM/TRIDENT read them (patch_size, patch_level, ...)
    skipped.csv        path, reason: every file that could not be used, and why
    qa/<id>.jpg        QA thumbnails (kept patches outlined)
    geojson/<id>.geojson  with ``output.geojson``: the kept patches as QuPath tiles (foreground fraction)
    patches/, shards/  optional materialised patches (image files or webdataset tar shards)
    config.yaml        the fully resolved config
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from cytofm import __version__
from cytofm.config.loader import config_dict, config_hash, write_config
from cytofm.data.annotations.geojson import (
    GeoJSONError,
    geojson_for,
    read_annotations,
    tile_feature,
    write_feature_collection,
)
from cytofm.data.annotations.regions import points_inside
from cytofm.data.cells.detect import NoResolution, detect_source
from cytofm.data.cells.plugins import DetectorUnavailable
from cytofm.data.cells.store import cell_features, cell_rows, read_cells, write_cells
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.foreground import box_fractions, find_foreground
from cytofm.data.prepare.prepared import MANIFEST_COLUMNS  # the format is defined where it is read
from cytofm.data.prepare.qa import draw_cells, qa_thumbnail
from cytofm.data.prepare.tiling import grid_coords
from cytofm.data.sources.image_io import ImageReadError
from cytofm.data.sources.inputs import Skip, SourceItem, discover
from cytofm.data.sources.item_ids import ids_in_outputs
from cytofm.data.sources.large_image import worker_start_method
from cytofm.data.sources.source import open_source
from cytofm.utils.errors import InputError
from cytofm.utils.hashing import file_digest
from cytofm.utils.io import atomic_path, portable_path, remove_stale_temporaries, write_csv
from cytofm.utils.lock import FolderLock
from cytofm.utils.progress import StageTask


class NothingUsable(RuntimeError):
    """Every source was skipped."""


@dataclass
class PrepareResult:
    out: Path
    rows: list[dict]
    skipped: list[Skip]
    notes: list[str] = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    reused: int = 0

    @property
    def n_patches(self) -> int:
        return sum(int(r["n_patches"]) for r in self.rows)


def _detect_cells(src, item: SourceItem, cfg: PrepareConfig, out: Path):
    """``cells/<id>.h5`` of a source (written before its coords file, which marks it finished)."""
    mpp = src.mpp if src.mpp else _source_mpp(item, cfg)
    cells = detect_source(src, mpp, cfg.cells)
    write_cells(out / "cells" / f"{item.id}.h5", cells, {"detector": cfg.cells.detector, "mpp": float(mpp)})
    return cells


def write_cells_csv(out: Path, rows: list[dict]) -> int:
    """``cells.csv``: every prepared source's cells, one row each (reused sources included)."""
    table = []
    for r in rows:
        h5 = out / "cells" / f"{r['id']}.h5"
        if h5.is_file():
            table += cell_rows(r["id"], read_cells(h5))
    write_csv(out / "cells.csv", table, None if table else ["item", "cell", "x", "y"])
    return len(table)


def _source_mpp(item: SourceItem, cfg: PrepareConfig) -> float | None:
    raw = item.meta.get("mpp", "")
    if raw:
        try:
            v = float(raw)
            if v > 0:
                return v
        except ValueError:
            pass
    return cfg.resolution.mpp


def _cached(h5_path: Path) -> dict:
    """Attributes of an earlier ``coords/<id>.h5`` ({} when there is none or it is unreadable)."""
    try:
        with h5py.File(h5_path, "r") as f:
            return dict(f.attrs)
    except Exception:
        return {}


@dataclass
class Roi:
    """A source's regions of interest (``tiling.roi``): the union of a GeoJSON file's annotations."""

    geometry: object  # shapely, level-0 pixels
    path: Path
    digest: str  # of the file: a changed outline re-tiles the source on resume


def read_roi(path: Path, log=print) -> Roi | str:
    """The annotation regions of a QuPath GeoJSON file as one :class:`Roi`, or why there are none."""
    import shapely

    try:
        regions = [a.geometry for a in read_annotations(path, log) if a.object_type == "annotation"]
    except GeoJSONError as e:
        return str(e)
    if not regions:
        return f"ROI file {path} has no annotation with an area (objectType annotation, a polygon)"
    return Roi(shapely.union_all(regions), path, file_digest(path)[1])


def _match_rois(items: list[SourceItem], roi: str | None, skips: list[Skip], log) -> tuple[list, dict]:
    """Each source's :class:`Roi`: one file for a single source, or ``<stem>.geojson`` in a folder, where a
    source without its file (or with an unusable one) is skipped: outlined regions mean only those."""
    if not roi:
        return items, {}
    folder = Path(roi)
    if not folder.exists():
        raise InputError(f"--roi {roi}: no such file or folder")
    if not folder.is_dir():
        if len(items) > 1:
            raise InputError(f"--roi {roi}: one GeoJSON file outlines one source, but {len(items)} were "
                             "found; give a folder of <stem>.geojson files (one per source)")
        r = read_roi(folder, log)
        if isinstance(r, str):
            raise InputError(f"--roi: {r}")
        return items, {it.id: r for it in items}
    kept, rois = [], {}
    for it in items:
        f = geojson_for(folder, it.path)
        r = read_roi(f, log) if f is not None else (f"no ROI file {Path(it.path).stem}.geojson in {folder} "
                                                    "(with an ROI folder, sources without one are left out)")
        if isinstance(r, str):
            skips.append(Skip(str(it.path), r))
        else:
            kept.append(it)
            rois[it.id] = r
    return kept, rois


def prepare_hash(cfg: PrepareConfig, kind: str = "") -> str:
    """What decides whether an earlier result of a source may be reused: the config, with the plane policy
    only for z-stacks (so that a new ``--z`` leaves single-plane sources prepared as they were)."""
    data = {k: v for k, v in config_dict(cfg).items() if k != "zstack"}
    return config_hash({**data, "zstack": config_dict(cfg.zstack)} if kind == "zstack" else data)


def _reusable_row(attrs: dict, chash: str, digest: str, rel: str, roi: Roi | None) -> dict | None:
    """The earlier row when the same file content was prepared with the same config (and ROI), else None."""
    if (attrs.get("config_hash") != chash or attrs.get("source_sha256") != digest
            or attrs.get("source_path") != rel or attrs.get("roi_sha256", "") != (roi.digest if roi else "")):
        return None
    try:
        return json.loads(attrs["row"])
    except (KeyError, ValueError):
        return None


def prepare_source(item: SourceItem, cfg: PrepareConfig, out: Path, chash: str, want_qa: bool,
                   roi: Roi | None = None) -> dict | Skip:
    """Find foreground, tile and write ``coords/<id>.h5`` for one source (runs in a worker); with ``roi``
    only patches centred inside it are kept."""
    try:
        return _prepare_source(item, cfg, out, chash, want_qa, roi)
    except (ImageReadError, NoResolution, DetectorUnavailable) as e:
        return Skip(str(item.path), str(e))
    except MemoryError:
        return Skip(str(item.path), "out of memory while reading (image too large for the machine)")
    except Exception as e:  # never let one bad file end the run
        return Skip(str(item.path),
                    f"unexpected error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _prepare_source(item: SourceItem, cfg: PrepareConfig, out: Path, chash: str,
                    want_qa: bool, roi: Roi | None) -> dict | Skip:
    h5_path = out / "coords" / f"{item.id}.h5"
    rel = portable_path(item.path, out)
    chash = prepare_hash(cfg, item.kind) if item.kind == "zstack" else chash
    old = _cached(h5_path) if h5_path.exists() else {}
    try:
        stat, digest = file_digest(item.path, (str(old.get("source_stat", "")),
                                               str(old.get("source_sha256", ""))))
    except OSError as e:
        return Skip(str(item.path), f"cannot read file ({e.strerror or e})")
    if cfg.output.resume and old:
        row = _reusable_row(old, chash, digest, rel, roi)
        if row is not None:
            row["_reused"] = True
            return row
    src = open_source(item.path, item.kind, _source_mpp(item, cfg), cfg.zstack.z, cfg.zstack.select)
    try:
        tiles = _tile(src, item, cfg, roi)
        if not isinstance(tiles, Skip):
            tiles = _score_focus(src, item, tiles, cfg)
        if isinstance(tiles, Skip):
            return tiles
        row = _manifest_row(item, src, tiles, cfg, rel, digest)
        cells = _detect_cells(src, item, cfg, out) if cfg.cells.enabled else None
        if cells is not None:
            row["n_cells"] = len(cells)
        if want_qa:
            im = qa_thumbnail(tiles.thumb, tiles.scale, tiles.coords, tiles.patch_wh, tiles.keep, tiles.mask,
                              tiles.focus, cfg.foreground.min_focus)
            if cells is not None:
                draw_cells(im, cells, tiles.scale)
            (out / "qa").mkdir(exist_ok=True)
            with atomic_path(out / "qa" / f"{item.id}.jpg") as tmp:
                im.save(tmp, format="JPEG", quality=85)
        if cfg.output.geojson:
            _write_geojson(out / "geojson" / f"{item.id}.geojson", tiles, cells)
        if cfg.output.materialize in ("png", "jpeg"):
            _materialize_files(src, row, tiles, cfg, out)
        # the coords file is written last: it marks the source as finished (QA and patches included)
        _write_coords(h5_path, item, src, tiles, cfg, row, rel,
                      {"config_hash": chash, "source_sha256": digest, "source_stat": stat,
                       "roi_sha256": roi.digest if roi else "",
                       "roi_path": portable_path(roi.path, out) if roi else ""})
        return row
    finally:
        src.close()


@dataclass
class _Tiles:
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

    @property
    def kept(self) -> np.ndarray:
        return self.coords[self.keep]

    @property
    def kept_planes(self) -> list:
        if self.planes is None:
            return [None] * int(self.keep.sum())
        return [int(z) for z in self.planes[self.keep]]


def _tile(src, item: SourceItem, cfg: PrepareConfig, roi: Roi | None = None) -> _Tiles | Skip:
    """Foreground and the patch grid of one source (only patches centred in ``roi`` when given), or why it
    is skipped."""
    t, fg, target = cfg.tiling, cfg.foreground, cfg.resolution.target
    w, h = src.width, src.height
    if min(w, h) < t.min_side:
        return Skip(str(item.path), f"image {w}x{h} is too small (a side below min_side={t.min_side} px)")
    if target is not None and src.mpp is None:
        return Skip(str(item.path), "resolution unknown: give --mpp or an 'mpp' column to resample to "
                                    f"{target:g} um/px")
    factor = (target / src.mpp) if target is not None else 1.0  # level-0 px per output px
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
    level = src.best_level(factor) if item.kind == "slide" and factor > 1 else 0
    return _Tiles(target, size0, level, whole, coords, fracs, keep, patch_wh, thumb, scale, mask,
                  image_fraction)


def _score_focus(src, item: SourceItem, tiles: _Tiles, cfg: PrepareConfig) -> _Tiles | Skip:
    """Every kept patch's focus, read as it is embedded (``patch_size`` px at the target resolution); a
    whole image at its own resolution. With ``min_focus``, patches below it are dropped."""
    from dataclasses import replace

    fg = cfg.foreground
    zstack = getattr(src, "kind", "") == "zstack"  # planes are chosen by focus: always scored
    if not zstack and (fg.focus == "none" or (fg.focus == "images" and getattr(src, "array", None) is None)):
        if fg.min_focus is not None:
            return Skip(str(item.path), f"min_focus={fg.min_focus:g} needs focus scores, and "
                                        f"foreground.focus={fg.focus} does not score this source's patches "
                                        "(a slide or an image read in regions): set foreground.focus=all")
        return tiles
    out = None if tiles.whole or tiles.target is None else cfg.tiling.patch_size
    if zstack:
        tiles = _plane_focus(src, tiles, out)
    else:
        focus, blank = _scored(src, tiles, np.flatnonzero(tiles.keep), out)
        tiles = replace(tiles, focus=focus, blank=blank)
    idx, focus, keep = np.flatnonzero(tiles.keep), tiles.focus, tiles.keep
    if fg.min_focus is not None:
        keep = keep & (np.nan_to_num(focus, nan=0.0) >= fg.min_focus)
        if not keep.any():
            return Skip(str(item.path), f"no patch in focus: all {len(idx)} foreground patches below "
                                        f"min_focus={fg.min_focus:g} (median focus "
                                        f"{float(np.median(focus[idx])):.2f})")
    return replace(tiles, keep=keep)


def _scored(src, tiles: _Tiles, at: np.ndarray, out: int | None, into=None) -> tuple[np.ndarray, np.ndarray]:
    """Focus and blank flags of the candidates ``at`` read from ``src``, into ``into`` (focus, blank) or
    fresh arrays (NaN and False elsewhere)."""
    from cytofm.data.prepare.focus import patch_focus

    n = len(tiles.coords)
    focus, blank = into if into is not None else (np.full(n, np.nan, np.float32), np.zeros(n, bool))
    focus[at], blank[at] = patch_focus(src, tiles.coords[at], tiles.patch_wh, out, tiles.thumb)
    return focus, blank


def _plane_focus(src, tiles: _Tiles, out: int | None) -> _Tiles:
    """A z-stack's patches with their plane and focus: ``best`` each patch's sharpest plane (by the stored
    bytes, or every plane scored: ``zstack.select``), ``all`` each patch once per plane, a plane number or
    ``edf`` scored as read."""
    from dataclasses import replace

    n, n_planes, policy = len(tiles.coords), src.n_planes, src.policy
    idx = np.flatnonzero(tiles.keep)
    if policy == "edf" or isinstance(policy, int):
        focus, blank = _scored(src, tiles, idx, out)
        planes = None if policy == "edf" else np.full(n, policy, np.int64)
        return replace(tiles, focus=focus, blank=blank, planes=planes)
    if policy == "best" and src.select == "bytes":  # the plane chosen from the file's index; it alone read
        z = np.zeros(n, np.int64)
        z[idx] = src.stored_bytes(tiles.coords[idx], tiles.patch_wh).argmax(0)
        focus, blank = np.full(n, np.nan, np.float32), np.zeros(n, bool)
        for k in np.unique(z[idx]):
            _scored(src.plane(int(k)), tiles, idx[z[idx] == k], out, (focus, blank))
        return replace(tiles, focus=focus, blank=blank, planes=z)
    per_plane = [_scored(src.plane(z), tiles, idx, out) for z in range(n_planes)]
    scores, blank = np.stack([f for f, _ in per_plane]), np.stack([b for _, b in per_plane])
    if policy == "best":
        z = np.nan_to_num(scores, nan=-1.0).argmax(0)
        at = (z, np.arange(n))
        return replace(tiles, focus=scores[at], blank=blank[at], planes=z.astype(np.int64))
    rep = lambda a: np.repeat(a, n_planes, axis=0)  # noqa: E731  every patch once per plane, in plane order
    return replace(tiles, coords=rep(tiles.coords), fracs=rep(tiles.fracs), keep=rep(tiles.keep),
                   focus=scores.T.reshape(-1), blank=blank.T.reshape(-1),
                   planes=np.tile(np.arange(n_planes, dtype=np.int64), n))


def _manifest_row(item: SourceItem, src, tiles: _Tiles, cfg: PrepareConfig, rel: str, digest: str) -> dict:
    whole, target = tiles.whole, tiles.target
    return {
        "id": item.id,
        "path": rel,
        "coords": f"coords/{item.id}.h5",
        "kind": item.kind,
        "width": src.width,
        "height": src.height,
        "mpp": "" if src.mpp is None else round(src.mpp, 6),
        "target_mpp": "" if target is None else round(target, 6),
        "patch_size": cfg.tiling.patch_size if not whole else "",
        "patch_size_level0": tiles.size0 if not whole else "",
        "patch_level": tiles.level,
        "whole": whole,
        "n_patches": int(tiles.keep.sum()),
        "n_candidates": int(len(tiles.coords)),
        "foreground_fraction": round(tiles.image_fraction, 4),
        "focus_median": "" if tiles.focus is None else round(float(np.median(tiles.focus[tiles.keep])), 4),
        "n_planes": getattr(src, "n_planes", ""),
        "z": str(src.policy) if item.kind == "zstack" else "",
        "conversion": src.conversion,
        "source_sha256": digest,
        **item.meta,
    }


def _write_coords(h5_path: Path, item: SourceItem, src, tiles: _Tiles, cfg: PrepareConfig, row: dict,
                  rel: str, provenance: dict) -> None:
    """``coords/<id>.h5``: the kept patches, their foreground, the geometry (on the dataset and the file, as
    CLAM and TRIDENT read it) and what decides whether a re-run may reuse it."""
    side = max(src.width, src.height)
    attrs = {
        "patch_size": cfg.tiling.patch_size if not tiles.whole else side,
        "patch_size_level0": tiles.size0 if not tiles.whole else side,
        "patch_level": tiles.level,
        "level0_width": src.width,
        "level0_height": src.height,
        "mpp": src.mpp if src.mpp is not None else np.nan,
        "target_mpp": tiles.target if tiles.target is not None else np.nan,
        "whole": tiles.whole,
        "n_planes": getattr(src, "n_planes", 1),
        "z_spacing_um": getattr(src, "z_spacing_um", None) or np.nan,
        "z_policy": str(src.policy) if item.kind == "zstack" else "",
        "name": item.id,
        "source_path": rel,
        "cytofm_version": __version__,
    }
    with atomic_path(h5_path) as tmp:
        with h5py.File(tmp, "w") as f:
            d = f.create_dataset("coords", data=tiles.kept.astype(np.int64))
            f.create_dataset("foreground", data=tiles.fracs[tiles.keep])
            if tiles.focus is not None:
                f.create_dataset("focus", data=tiles.focus[tiles.keep])
                f.create_dataset("focus_blank", data=tiles.blank[tiles.keep])
            if tiles.planes is not None:
                f.create_dataset("z", data=tiles.planes[tiles.keep])
            for k, v in attrs.items():
                d.attrs[k] = v
                f.attrs[k] = v
            for k, v in provenance.items():
                f.attrs[k] = v
            f.attrs["row"] = json.dumps(row)


def _write_geojson(path: Path, tiles: _Tiles, cells=None) -> None:
    """The kept patches as QuPath tiles with their foreground fraction, to review the tiling in QuPath, and
    the detected cells as QuPath cells (outline, nucleus, measurements)."""
    w, h = tiles.patch_wh
    features = [tile_feature(int(x), int(y), w, h, {"Foreground fraction": float(f)})
                for (x, y), f in zip(tiles.kept, tiles.fracs[tiles.keep], strict=True)]
    write_feature_collection(path, features + (cell_features(cells) if cells is not None else []))


def _materialize_files(src, row: dict, tiles: _Tiles, cfg: PrepareConfig, out: Path) -> None:
    ext = "png" if cfg.output.materialize == "png" else "jpg"
    d = out / "patches" / row["id"]
    d.mkdir(parents=True, exist_ok=True)
    out_size = None if row["whole"] else cfg.tiling.patch_size
    for (x, y), z in zip(tiles.kept, tiles.kept_planes, strict=True):
        arr = src.read(int(x), int(y), tiles.patch_wh, out_size, z=z)
        name = f"{x}_{y}" if z is None else f"{x}_{y}_z{z}"
        with atomic_path(d / f"{name}.{ext}") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG" if ext == "png" else "JPEG", quality=95)


def _qa_selection(n: int, k: int) -> set[int]:
    if k < 0 or k >= n:
        return set(range(n))
    if k == 0:
        return set()
    return {int(round(i)) for i in np.linspace(0, n - 1, k)}


def run_prepare(inputs: list[str], out: str | os.PathLike, cfg: PrepareConfig, progress=None,
                log=print, command: str = "") -> PrepareResult:
    """Prepare every source; per-file problems go to ``skipped.csv`` and the run goes on.

    The output folder is locked for the run; a second ``prepare`` into it is refused.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, log, "prepare"):
        remove_stale_temporaries(out)
        return _prepare_locked(inputs, out, cfg, progress, log, command)


def _prepare_locked(inputs: list[str], out: Path, cfg: PrepareConfig, progress, log,
                    command: str) -> PrepareResult:
    collisions: list[dict] = []
    items, skips, notes = discover(inputs, cfg, ids_in_outputs(out / "coords", out), collisions)
    write_csv(out / "id_collisions.csv", [{**c, "path": portable_path(c["path"], out)} for c in collisions],
              ["path", "id", "shared_name"])
    for n in notes:
        log(f"note: {n}")
    items, rois = _match_rois(items, cfg.tiling.roi, skips, log)
    for s in skips:
        log(f"skipped: {s.path}: {s.reason}")
    write_config(cfg, out / "config.yaml", command)
    t0 = time.perf_counter()
    results, mp = _prepare_all(items, cfg, out, prepare_hash(cfg), progress, log, rois)
    rows = [r for r in results if isinstance(r, dict)]
    skips += [r for r in results if isinstance(r, Skip)]
    reused = sum(1 for r in rows if r.pop("_reused", False))
    write_csv(out / "skipped.csv", [{"path": portable_path(s.path, out), "reason": s.reason} for s in skips],
              ["path", "reason"])
    if cfg.cells.enabled:
        n_cells = write_cells_csv(out, rows)
        notes.append(f"{n_cells} cell(s) found in {len(rows)} source(s) ({cfg.cells.detector}): cells.csv, "
                     "cells/<id>.h5")
    if rows:
        extra = [k for r in rows for k in r if k not in MANIFEST_COLUMNS]
        cols = MANIFEST_COLUMNS + list(dict.fromkeys(extra))
        write_csv(out / "manifest.csv", rows, cols)
    result = PrepareResult(out, rows, skips, notes, mp, time.perf_counter() - t0, reused)
    if cfg.output.materialize == "webdataset" and rows:
        from cytofm.data.prepare.shards import write_shards

        write_shards(out, rows, cfg, progress=progress)
    _write_summary(out, result, mp)
    if not rows:
        raise NothingUsable(f"nothing usable: all {len(skips)} input file(s) were skipped "
                            f"(see {out / 'skipped.csv'})")
    return result


def _write_summary(out: Path, result: PrepareResult, mp: float) -> None:
    summary = {
        "sources": len(result.rows), "skipped": len(result.skipped), "patches": result.n_patches,
        "reused": result.reused,
        "megapixels": round(mp, 2), "seconds": round(result.seconds, 2),
        "megapixels_per_s": round(mp / max(result.seconds, 1e-9), 2), "cytofm_version": __version__,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def _prepare_all(items: list, cfg: PrepareConfig, out: Path, chash: str, progress, log,
                 rois: dict | None = None) -> tuple[list, float]:
    """Every source prepared, in worker processes when there are several; results in input order, and
    the megapixels read. ``rois``: each source's :class:`Roi` by id."""
    rois = rois or {}
    qa_idx = _qa_selection(len(items), cfg.output.qa_thumbnails)
    workers = cfg.output.workers or min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, len(items) or 1))
    results: list[dict | Skip] = [None] * len(items)  # type: ignore[list-item]
    t0 = time.perf_counter()
    mp = 0.0
    task = StageTask(progress, "prepare", len(items), rate="")

    def _done(i: int, r):
        nonlocal mp
        results[i] = r
        if isinstance(r, Skip):
            log(f"skipped: {r.path}: {r.reason}")
        else:
            mp += r["width"] * r["height"] / 1e6
        el = max(time.perf_counter() - t0, 1e-9)
        task.update(advance=1, rate=f"{task.completed / el:.1f} img/s, {mp / el:.1f} MP/s")

    with task:
        if workers == 1:
            for i, it in enumerate(items):
                _done(i, prepare_source(it, cfg, out, chash, i in qa_idx, rois.get(it.id)))
        else:
            method = worker_start_method()
            ctx = multiprocessing.get_context(method) if method else None
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futs = {pool.submit(prepare_source, it, cfg, out, chash, i in qa_idx, rois.get(it.id)): i
                        for i, it in enumerate(items)}
                for fut in as_completed(futs):
                    _done(futs[fut], fut.result())
    return results, mp
