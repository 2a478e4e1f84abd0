"""``cytofm predict``: a model trained once (a `cytofm mil` or `cytofm probe` folder) applied to new cases.

The model folder is read once (``SavedModel``). The input is prepared and embedded with the settings and
the encoder the model records, or, given a feature store, the store is checked to hold that encoder's
features (``predict_input``). The cross-validation models are applied as an ensemble (mean probability and
its spread over the members), or the refit model; a cell classifier classifies every cell and counts them
per field (``cell_counts``). An item whose source the model was trained on, whose specimen it was trained
on, or that the encoder saw in pretraining is flagged (``predict_leakage``), and left out of the metrics
unless asked (``predict_tables``); a MIL model's attention is written for review (``predict_attention``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytofm.eval.saved_model import ModelFolderError, SavedModel
from cytofm.features.store import STORE_FILE, load_store, read_item
from cytofm.pipeline.cell_counts import (
    cell_rows,
    classify_cells,
    count_lines,
    count_rows,
    empty_fields,
    holds_single_cells,
    write_cell_geojson,
)
from cytofm.pipeline.predict_attention import previews, write_attention, write_geojson
from cytofm.pipeline.predict_input import check_store, embed, paths_as_given
from cytofm.pipeline.predict_leakage import leakage_flags
from cytofm.pipeline.predict_tables import (
    prediction_rows,
    skipped_lines,
    specimen_columns,
    specimen_rows,
    write_summary,
)
from cytofm.utils.io import write_csv


@dataclass
class PredictResult:
    out: Path
    n_items: int
    n_flagged: int
    metrics: dict | None  # with labels: on the items not flagged (or all, ``include_seen``)
    lines: list[str]
    seconds: dict[str, float]  # prepare, extract, apply (with the tables), heatmaps
    cells: CellPredictions | None = None  # a cell classifier's: what triage builds on


@dataclass
class CellPredictions:
    """A cell classifier applied: every cell (its field, id, centre and features), each member's
    probabilities (M, cells, C), the store's items, the prepared folder with the cells' outlines, and the
    tables written."""

    cells: list[dict]
    probs: np.ndarray
    rows: list[dict]
    prepared: Path | None
    table: list[dict]  # predictions.csv's rows
    counts: list[dict]  # cell_counts.csv's rows


def run_predict(model_dir: Path, input: Path, out: Path, use: str = "ensemble", include_seen: bool = False,
                heatmaps: int = 12, progress=None, log=print,
                method: str | None = None, device: str = "auto") -> PredictResult | None:
    """Predict every item of ``input`` into ``out``. Under torchrun the extraction is shared across the
    processes as ``extract`` shares it; rank 0 applies the model (None elsewhere)."""
    import torch.distributed as dist

    input, out = Path(input), Path(out)
    model = SavedModel.read(Path(model_dir), method)
    files = model.members(use)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {"prepare": 0.0, "extract": 0.0}
    store = input if (input / STORE_FILE).is_file() else embed(model, input, out, progress, log, seconds,
                                                               device)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return None
    t0 = time.perf_counter()
    check_store(model, store)
    rows = load_store(store)
    if not rows:
        raise ModelFolderError(f"{store}: no item to predict")
    attention, counts, cells = None, None, None
    if model.reads_cells:
        cells = _apply_cells(model, files, rows, use, store, input, out)
        table, counts = cells.table, cells.counts
    else:
        probs, attention = _apply(model, files, rows)
        table = prediction_rows(model, rows, probs, leakage_flags(model, rows, use),
                                paths_as_given(input, rows))
    write_csv(out / "predictions.csv", table)
    write_csv(out / "specimens.csv", specimen_rows(table, model.classes), specimen_columns(model.classes))
    if attention is not None:
        write_attention(out / "attention.h5", rows, attention)
        write_geojson(out / "geojson", rows, attention, table, model.classes)
    extra = (count_lines(counts, model.classes) if counts is not None else []) + skipped_lines(out)
    metrics, lines = write_summary(model, table, include_seen, out, len(files), extra)
    seconds["apply"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if heatmaps > 0 and attention is not None:
        previews(rows, attention, out / "heatmaps", heatmaps, log, table)
    seconds["heatmaps"] = time.perf_counter() - t0
    flagged = sum(1 for r in table if r["excluded"])
    return PredictResult(out, len(table), flagged, metrics, lines, seconds,
                         cells)


def _apply(model: SavedModel, files: list[Path], rows: list[dict]):
    """Each member's probabilities (M, N, C), and for MIL models the members' mean attention per item
    (None for probes, which read an item's mean-pooled features)."""
    import torch

    from cytofm.mil.saved import ensemble_predict, load_model

    bags = []
    for r in rows:
        f, _, _ = read_item(r["h5"])
        if len(f) == 0:
            raise ModelFolderError(f"{r['h5']}: item {r['id']} has no instance to predict from")
        if f.shape[1] != model.feature_dim:
            raise ModelFolderError(f"{r['h5']}: features of size {f.shape[1]}, the model takes "
                                   f"{model.feature_dim}")
        bags.append(torch.from_numpy(f.astype(np.float32)))
    if model.kind == "probe":
        from cytofm.eval.saved_probe import members_proba

        x = np.stack([b.numpy().mean(0) for b in bags])
        return members_proba(model.method, files, x, len(model.classes)), None
    return ensemble_predict([load_model(f, model.architecture) for f in files], bags)


def _apply_cells(model: SavedModel, files: list[Path], rows: list[dict], use: str, store: Path,
                 input: Path, out: Path) -> CellPredictions:
    """A cell classifier applied to every cell of the input: one prediction row per cell (flagged as its
    field is), counts by class per field in ``cell_counts.csv``, the classified cells as QuPath GeoJSON."""
    from cytofm.data.prepare.prepared import is_prepared_dir
    from cytofm.features.store import prepared_folder

    cells = cell_rows(store, rows)
    if not cells:
        raise ModelFolderError(f"{store}: no cell to classify")
    probs = classify_cells(model, files, cells)
    flags = leakage_flags(model, rows, use)
    single = holds_single_cells(store)  # then the items' labels are the cells' own
    pseudo = [{**{k: v for k, v in rows[c["item"]].items() if single or k != model.label}, "id": c["id"]}
              for c in cells]
    table = prediction_rows(model, pseudo, probs, [dict(flags[c["item"]]) for c in cells],
                            paths_as_given(input, rows))
    for t, c in zip(table, cells, strict=True):
        t.update({"field": c["field"], "x": c["x"], "y": c["y"]})
    prepared = (out / "prepared" if (out / "prepared" / "cells").is_dir()
                else input if is_prepared_dir(input) else prepared_folder(store))
    counts = count_rows(table, model.classes, [] if single else empty_fields(prepared, rows))
    write_csv(out / "cell_counts.csv", counts)
    write_cell_geojson(out / "geojson", prepared, rows, table, model.classes)
    return CellPredictions(cells, probs, rows, prepared, table, counts)
