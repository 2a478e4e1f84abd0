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

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytofm import __version__
from cytofm.config.loader import write_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.one_source import prepare_hash, prepare_source
from cytofm.data.prepare.outputs import write_cells_csv
from cytofm.data.prepare.prepared import MANIFEST_COLUMNS  # the format is defined where it is read
from cytofm.data.prepare.roi import match_rois
from cytofm.data.sources.inputs import Skip, discover
from cytofm.data.sources.item_ids import ids_in_outputs
from cytofm.data.sources.large_image import worker_start_method
from cytofm.utils.errors import InputError
from cytofm.utils.io import portable_path, remove_stale_temporaries, strict_json, write_csv
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
    items, rois = match_rois(items, cfg.tiling.roi, skips, log)
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
    (out / "summary.json").write_text(strict_json(summary))


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
            for w in r.pop("_warnings", []):
                log(f"warning: {items[i].path}: {w}")
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
