"""A cheap first pass before the foundation model, for slides of 10^4 to 10^6 cells: embedding every cell with
a ViT takes well over an hour on two cores, so a cell classifier on cheap features (the detector's
morphometrics, or a small model) classifies every cell, and only each case's ``candidates`` most abnormal
cells are embedded and classified by the foundation model. The candidates are written as a prepared folder
of their own (the same sources and settings, only those cells), so extraction and ``predict`` run on it
unchanged. Adequacy and the counts of every cell still come from the full detection.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from cytofm.eval.saved_model import SavedModel
from cytofm.pipeline.triage_config import TriageConfig, TriageError, abnormal_classes, check_cell_model


def _same_cells(main: SavedModel, cheap: SavedModel, where: Path) -> None:
    """Both models must have been trained on cells detected with the same prepare settings, or the
    candidates would be other cells than the ones the foundation model's classifier knows."""
    from cytofm.pipeline.predict_input import settings_differences

    diff = settings_differences(main.prepare, cheap.prepare)
    if diff:
        raise TriageError(f"--first-pass {where}: its cells were prepared with other settings than --model's "
                          f"({'; '.join(diff[:6])}); train both on the same prepared folder")


def keep_top(p_abnormal: np.ndarray, fields: list[str], n: int) -> dict[str, np.ndarray]:
    """Per field, the indices (into that field's cells, in their order) of its ``n`` most abnormal cells,
    sorted by index; every cell of a field with at most ``n``."""
    by: dict[str, list[int]] = {}
    for k, f in enumerate(fields):
        by.setdefault(f, []).append(k)
    out = {}
    for f, idx in by.items():
        p = p_abnormal[idx]
        order = np.lexsort((np.arange(len(p)), -p))[:n]
        out[f] = np.sort(order)
    return out


def write_candidates(full: Path, keep: dict[str, np.ndarray], dest: Path) -> Path:
    """``dest``: a prepared folder like ``full`` holding only the kept cells of each source (sources not
    in ``keep`` left out); source paths rewritten for the new folder, patch coordinates and settings as
    they are."""
    import h5py

    from cytofm.data.cells.store import read_cells, write_cells
    from cytofm.utils.io import read_csv, write_csv

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "coords").mkdir(parents=True)
    shutil.copy2(full / "config.yaml", dest / "config.yaml")
    rows = []
    for r in read_csv(full / "manifest.csv"):
        if r["id"] not in keep:
            continue
        src = (full / r["path"]).resolve() if not Path(r["path"]).is_absolute() else Path(r["path"])
        shutil.copy2(full / r["coords"], dest / r["coords"])
        with h5py.File(full / "cells" / f"{r['id']}.h5", "r") as f:
            attrs = dict(f.attrs)
        cells = read_cells(full / "cells" / f"{r['id']}.h5")
        mask = np.zeros(len(cells), bool)
        mask[keep[r["id"]]] = True
        write_cells(dest / "cells" / f"{r['id']}.h5", cells.select(mask), attrs)
        rows.append({**r, "path": os.path.relpath(src, dest), "n_cells": int(mask.sum())})
    write_csv(dest / "manifest.csv", rows)
    return dest


def first_pass(cfg: TriageConfig, out: Path, progress=None, log=print) -> tuple[Path, Path, dict]:
    """Classify every cell with the first-pass model, keep each case's ``cfg.candidates`` most abnormal and
    write them to ``out/candidates``: (that folder, the full prepared folder, what was kept)."""
    from cytofm.pipeline.predict import run_predict

    main = SavedModel.read(Path(cfg.model), cfg.method)
    cheap = SavedModel.read(Path(cfg.first_pass))
    check_cell_model(cheap, Path(cfg.first_pass))
    _same_cells(main, cheap, Path(cfg.first_pass))
    names = [main.classes[k] for k in abnormal_classes(list(main.classes), cfg.abnormal)]
    missing = [c for c in names if c not in cheap.classes]
    if missing:
        raise TriageError(f"--first-pass {cfg.first_pass}: it has no class {', '.join(missing)} (its "
                          f"classes: {', '.join(cheap.classes)})")
    res = run_predict(Path(cfg.first_pass), Path(cfg.input), out / "first_pass", cfg.use, True, heatmaps=0,
                      progress=progress, log=log, device=cfg.device)
    pred = res.cells
    p = pred.probs.mean(0)[:, [list(cheap.classes).index(c) for c in names]].sum(1)
    keep = keep_top(p, [c["field"] for c in pred.cells], cfg.candidates)
    dest = write_candidates(pred.prepared, keep, out / "candidates")
    n = sum(len(v) for v in keep.values())
    log(f"first pass ({cfg.first_pass}): {len(p)} cells classified, the {n} most abnormal "
        f"(at most {cfg.candidates} per case) go to the foundation model")
    return dest, pred.prepared, {"cells": int(len(p)), "candidates": int(n)}
