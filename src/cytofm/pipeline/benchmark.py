"""``cytofm benchmark`` as a pipeline: encoders x tasks -> prepare, extract (cached), evaluate, figures,
one table and the summary in words.

Extraction is cached per task and encoder under ``OUT/cache`` (the store's per-item resume makes a
re-run reuse it), evaluations are reused when nothing they depend on changed (``cytofm.eval.benchmark``),
and ABMIL attention is scored against the task's boxes. The CLI and the demo call ``run_benchmark``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cytofm.eval.benchmark import evaluate_stores
from cytofm.eval.config import BenchmarkConfig, TaskConfig
from cytofm.utils.io import slug, write_csv


def _data_key(task: TaskConfig, data: Path) -> str:
    """Tasks on the same data, mode and preparation share one prepared set and one store per
    encoder (e.g. Herlev 7-class and normal/abnormal; ABMIL and a probe on the same bags). Stores keep
    every manifest column, so each task reads its own label column."""
    key = f"{data.resolve()}|{task.mode}|{task.prepare_preset if task.mode == 'tiles' else ''}"
    return (f"{slug(data.parent.name + '_' + data.stem)}_{task.mode}_"
            f"{hashlib.sha1(key.encode()).hexdigest()[:8]}")


def _resolve(base: Path, p: str) -> Path:
    return Path(p) if Path(p).is_absolute() else base / p


def run_benchmark(cfg: BenchmarkConfig, base: Path, out: Path, progress=None, log=print) -> list[dict]:
    from cytofm.eval.benchmark_report import comparison_rows, plot, result_rows, write_markdown
    from cytofm.eval.cell_labels import CellPointsError
    from cytofm.eval.splits import ProtocolError
    from cytofm.eval.summary import headline, write_summary
    from cytofm.utils.display import display_name, display_text

    task_runs, skipped = [], {}
    for task in cfg.tasks:
        try:
            stores, skip = _extract_all(cfg, task, base, out, progress, log)
            skipped.update(skip)
            tr = evaluate_stores(task, stores, out, progress, log) if stores else None
        except (ProtocolError, CellPointsError) as e:  # one task's data cannot be split or labelled as asked
            skipped[f"task {task.name}"] = _task_skipped(cfg, task, e, log)
            continue
        if tr is None:
            continue
        if task.eval == "mil" and task.boxes:
            for spec, r in tr.runs.items():
                r.loc = _localisation(r.store, out / task.name / slug(spec), _resolve(base, task.boxes),
                                      task.box_class, task.seeds, log)
        task_runs.append(tr)
    if not task_runs:
        raise ProtocolError("no task could be evaluated: " + "; ".join(skipped.values()) if skipped
                            else "no task could be evaluated")
    rows = result_rows(task_runs)
    comps = comparison_rows(task_runs, cfg)
    write_csv(out / "results.csv", rows)
    write_csv(out / "comparisons.csv", comps)
    write_markdown(out / "results.md", task_runs, rows, comps, cfg, skipped)
    present = [e for e in cfg.encoders if any(e in tr.runs for tr in task_runs)]
    if present:
        skips = [f"skipped {display_name(k)}: {display_text(v.splitlines()[0])}" for k, v in skipped.items()]
        write_summary(out / "summary.md", headline(rows, comps, present[0], cfg.metric) + skips)
    plot(rows, out / "results.png")
    return rows


def _task_skipped(cfg: BenchmarkConfig, task: TaskConfig, e: Exception, log) -> str:
    """The line for a task whose data cannot be split or labelled as asked (a cells task with no matched
    point): without --keep-going it stops the run, as the same kind of error, with the finished extractions
    kept; with it the task is warned and left out (the line returned for the summary)."""
    msg = str(e) if str(e).startswith(f"[{task.name}]") else f"[{task.name}] {e}"
    if not cfg.skip_missing:
        raise type(e)(f"task {task.name} cannot be evaluated: {msg}; finished extractions are kept; "
                      "fix it, or give --keep-going to evaluate the other tasks") from None
    log(f"warning: task skipped: {msg}")
    return msg


def _task_input(task: TaskConfig, data: Path, base: Path, out: Path, log) -> Path:
    """The task's items: its data as given, one part of a split, or cell crops around annotated points."""
    from cytofm.data.annotations.point_crops import point_crops
    from cytofm.data.provenance.split_parts import load_split_map, part_manifest

    split = load_split_map(task.split, base) if task.split else None
    tag = f"{task.part}" if split is not None else "all"
    if task.points and task.mode != "cells":
        d = out / "cache" / "cells" / f"{slug(task.name)}_{tag}_{task.crop_size}px"
        m, n = point_crops(_resolve(base, task.points), task.label, task.crop_size, d, split, task.part,
                           tuple(task.exclude))
        log(f"[{task.name}] {n} cell crops of {task.crop_size} px around the points of {task.points}"
            + (f" ({task.part} part of {task.split})" if split is not None else ""))
        return m
    if split is not None:
        if not (data.suffix == ".csv" and data.is_file()):
            raise ValueError(f"[{task.name}] `split` needs a manifest CSV as data, not {data}")
        m, n = part_manifest(data, split, task.part,
                             out / "cache" / "parts" / f"{slug(data.parent.name)}_{tag}" / "manifest.csv")
        log(f"[{task.name}] {n} images of the {task.part} part of {task.split}")
        return m
    return data


def _extract_all(cfg: BenchmarkConfig, task: TaskConfig, base: Path, out: Path, progress, log):
    """One feature store per encoder (spec -> (store, resolved spec, weights hash)); missing weights skip."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import EncoderError, create_encoder

    data = _task_input(task, _resolve(base, task.data), base, out, log)
    source = data
    if task.mode in ("tiles", "cells"):
        meta = ({"label_column": task.label} if str(data).endswith(".csv") and not task.points
                else {"labels_from_folders": data.is_dir()})
        values = {"metadata": meta, "output": {"qa_thumbnails": 0}}
        if task.mode == "cells":
            values |= {"cells": {"enabled": True}, "resolution": {"mpp": task.mpp}}
        pcfg = build_config(PrepareConfig, "prepare", task.prepare_preset, values=values)
        source = out / "cache" / _data_key(task, data) / "prepared"
        log(f"[{task.name}] preparing {data}")
        run_prepare([str(data)], source, pcfg, log=lambda m: None)
    stores, skipped = {}, {}
    for spec in cfg.encoders:
        if spec == "morphometrics" and task.mode != "cells":
            log(f"[{task.name}] morphometrics not read: it measures detected cells (mode cells), the task is "
                f"in mode {task.mode}")
            continue
        try:
            enc = create_encoder(spec)
        except EncoderError as e:
            if not cfg.skip_missing:
                raise EncoderError(f"encoder {spec} cannot be used: {e} "
                                   "(give --keep-going to run the others and list it as skipped)") from None
            log(f"[{task.name}] skipped {spec}: {e}")
            skipped[spec] = str(e)
            continue
        store = out / "cache" / _data_key(task, data) / slug(spec)
        log(f"[{task.name}] extracting with {spec}")
        extract = ExtractConfig(input=str(source), mode=task.mode, out=str(store), batch_size=cfg.batch_size,
                                label_column=task.label, workers=1)
        run_extract(enc, extract, log=lambda m: None, progress=progress)
        stores[spec] = (store, enc.spec, enc.weights_hash)
    stores |= _combined(cfg, stores, out / "cache" / _data_key(task, data), log)
    if task.mode == "cells" and task.points:
        stores = {k: _cell_items(task, v, source, base, log) for k, v in stores.items()}
    return stores, skipped


def _combined(cfg: BenchmarkConfig, stores: dict, cache: Path, log) -> dict:
    """``A+B`` stores of the combinations asked for whose parts were extracted; the pretraining guard
    reads the first part's record (its images are what the combination saw)."""
    from cytofm.features.derived import combine_stores

    out = {}
    for combo in cfg.combine:
        a, _, b = combo.partition("+")
        if a in stores and b in stores:
            combine_stores(stores[a][0], stores[b][0], cache / slug(combo))
            out[combo] = (cache / slug(combo), stores[a][1], f"{stores[a][2]}+{stores[b][2]}")
        else:
            log(f"combination {combo} skipped: {a if a not in stores else b} was not extracted")
    return out


def _cell_items(task: TaskConfig, entry: tuple, prepared: Path, base: Path, log) -> tuple:
    """A field-level cells store made a store of the detected cells matched to the task's points."""
    from cytofm.eval.cell_labels import label_detected_cells

    store, resolved, whash = entry
    dst = store.parent / f"{store.name}_cells_matched"
    label_detected_cells(store, _resolve(base, task.points), task.label, dst, tuple(task.exclude), prepared,
                         log=lambda m: log(f"[{task.name}] {m}"))
    return dst, resolved, whash


def _localisation(store: Path, ev_out: Path, boxes: Path, box_class: str, seeds, log) -> dict | None:
    """Mean localisation of each seed's out-of-fold ABMIL attention; heatmaps of a few items for seed 0."""
    from cytofm.features.store import load_store
    from cytofm.viz.heatmaps import mil_heatmaps, warn_unmatched_boxes
    from cytofm.viz.localization import summarise

    if not boxes.is_dir():
        log(f"warning: boxes folder {boxes} not found; attention not scored")
        return None
    if not warn_unmatched_boxes(boxes, [r["path"] for r in load_store(store)], box_class, log):
        return None
    per_seed = []
    for k, seed in enumerate(seeds):
        f = ev_out / f"attention_{seed}.npz"
        if not f.is_file():
            continue
        with np.load(f) as z:
            att = {i: z[i] for i in z.files}
        scores = mil_heatmaps(store, att, ev_out / f"heatmaps_seed{seed}", boxes, box_class,
                              limit=6 if k == 0 else 0, log=log)
        if scores:
            per_seed.append(summarise(scores))
    if not per_seed:
        return None
    return {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
