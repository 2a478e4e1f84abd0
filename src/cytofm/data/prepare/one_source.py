"""One source through ``prepare`` (in a worker): reuse of an earlier result, or its kind opened, tiled,
scored and written; every failure of the source becomes a :class:`Skip`, never the end of the run."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from cytofm.config.loader import config_dict, config_hash
from cytofm.data.cells.detect import (
    ImplausibleResolution,
    NoResolution,
    clump_share,
    clump_warning,
    detect_source,
    plausible_resolution,
)
from cytofm.data.cells.plugins import DetectorUnavailable
from cytofm.data.cells.store import write_cells
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.outputs import manifest_row, materialize_files, write_coords, write_geojson
from cytofm.data.prepare.qa import draw_cells, qa_thumbnail
from cytofm.data.prepare.roi import Roi
from cytofm.data.prepare.scoring import score_focus
from cytofm.data.prepare.tiles import Tiles, tile_source
from cytofm.data.sources.image_io import ImageReadError
from cytofm.data.sources.inputs import Skip, SourceItem
from cytofm.data.sources.kinds import INPUT_KINDS
from cytofm.data.sources.resolution import BadResolution, missing_resolution, parse_mpp
from cytofm.utils.hashing import file_digest
from cytofm.utils.io import atomic_path, portable_path


def source_mpp(item: SourceItem, cfg: PrepareConfig) -> float | None:
    """The source's level-0 resolution: its manifest's ``mpp`` (a decimal comma read, anything else that
    is not a number refused by name), else the config's."""
    where = f"manifest line {item.line}: " if item.line else ""
    v = parse_mpp(item.meta.get("mpp", ""), where)
    return v if v is not None else cfg.resolution.mpp


def _detect_cells(src, item: SourceItem, cfg: PrepareConfig, out: Path, warnings: list[str]):
    """``cells/<id>.h5`` of a source (written before its coords file, which marks it finished); a
    resolution the cells contradict is warned about, or refused where the cells would be meaningless."""
    mpp = src.mpp if src.mpp else source_mpp(item, cfg)
    if not mpp:
        raise NoResolution(missing_resolution(item.path, "cell detection (sizes are in micrometres)",
                                              "mpp" in item.meta))
    cells = detect_source(src, mpp, cfg.cells)
    warning, refusal = plausible_resolution(cells, mpp, cfg.cells)
    if refusal:
        raise ImplausibleResolution(refusal)
    warnings += [w for w in (warning, clump_warning(cells), *cells.notes) if w]
    write_cells(out / "cells" / f"{item.id}.h5", cells, {"detector": cfg.cells.detector, "mpp": float(mpp)})
    return cells


def _cached(h5_path: Path) -> dict:
    """Attributes of an earlier ``coords/<id>.h5`` ({} when there is none or it is unreadable)."""
    try:
        with h5py.File(h5_path, "r") as f:
            return dict(f.attrs)
    except Exception:
        return {}


def prepare_hash(cfg: PrepareConfig, planes: bool = False) -> str:
    """What decides whether an earlier result of a source may be reused: the config, with the plane policy
    only for kinds with ``planes`` (so a new ``--z`` leaves single-plane sources prepared as they were)."""
    data = {k: v for k, v in config_dict(cfg).items() if k != "zstack"}
    return config_hash({**data, "zstack": config_dict(cfg.zstack)} if planes else data)


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
    except (ImageReadError, NoResolution, ImplausibleResolution, BadResolution, DetectorUnavailable) as e:
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
    kind = INPUT_KINDS.get(item.kind)
    chash = prepare_hash(cfg, planes=True) if kind.planes else chash
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
    src = kind.open(item.path, source_mpp(item, cfg), cfg.zstack.z, cfg.zstack.select)
    try:
        tiles = tile_source(src, item, cfg, roi)
        if not isinstance(tiles, Skip):
            tiles = score_focus(src, item, tiles, cfg)
        if isinstance(tiles, Skip):
            return tiles
        row = manifest_row(item, src, tiles, cfg, rel, digest)
        warnings = list(tiles.warnings)
        cells = _detect_cells(src, item, cfg, out, warnings) if cfg.cells.enabled else None
        if cells is not None:
            row["n_cells"] = len(cells)
            row["n_clumps"] = int(cells.clump.sum())
            row["clump_area_share"] = round(clump_share(cells), 3)
            row["cell_notes"] = "; ".join(cells.notes)  # kept beside the log line (a stain not estimable)
        if warnings:  # said by the main process (run.py), and again when the row is reused
            row["_warnings"] = warnings
        if want_qa:
            _write_qa(out / "qa" / f"{item.id}.jpg", tiles, cells, cfg)
        if cfg.output.geojson:
            write_geojson(out / "geojson" / f"{item.id}.geojson", tiles, cells)
        if cfg.output.materialize in ("png", "jpeg"):
            materialize_files(src, row, tiles, cfg, out)
        # the coords file is written last: it marks the source as finished (QA and patches included)
        write_coords(h5_path, item, src, tiles, cfg, row, rel,
                     {"config_hash": chash, "source_sha256": digest, "source_stat": stat,
                      "roi_sha256": roi.digest if roi else "",
                      "roi_path": portable_path(roi.path, out) if roi else ""})
        return row
    finally:
        src.close()


def _write_qa(path: Path, tiles: Tiles, cells, cfg: PrepareConfig) -> None:
    """The QA thumbnail: kept patches outlined (and focus, cells where there are)."""
    im = qa_thumbnail(tiles.thumb, tiles.scale, tiles.coords, tiles.patch_wh, tiles.keep, tiles.mask,
                      tiles.focus, cfg.foreground.min_focus)
    if cells is not None:
        draw_cells(im, cells, tiles.scale)
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp:
        im.save(tmp, format="JPEG", quality=85)
