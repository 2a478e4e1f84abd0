"""``cytofm triage``: a batch of cases handed over as a cytology screener hands it: a worklist ranked by
risk with the decision at an operating point, a QC rescreen draw, adequacy, "could not analyse" apart from
negative, and per case a gallery of the cells to look at, in a review page whose corrections become the
next training labels.

It stands on ``predict`` with a cell classifier (a ``cytofm probe --cell-points`` run): every cell
classified by every member of the ensemble; a case's score is built from its cells
(``eval.cell_burden``), its adequacy from the detector's cells (``eval.adequacy``), the worklist from the
scores (``eval.worklist``); the galleries and the page are ``triage_gallery``'s and
``viz.review_page``'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytofm.eval.adequacy import ESTIMATE_NOTE, Adequacy, assess
from cytofm.eval.cell_burden import CaseCells, aggregate, case_summary
from cytofm.eval.saved_model import SavedModel
from cytofm.eval.worklist import CaseScore, build_worklist, worklist_summary
from cytofm.pipeline.triage_config import TriageConfig, TriageError, abnormal_classes, check_cell_model
from cytofm.utils.io import strict_json, write_csv


@dataclass
class Case:
    """One case (a field or slide of the input): its cells' indices in the predictions, their aggregate,
    its adequacy and the detector's cells, and why it could not be analysed (empty when it was)."""

    id: str
    image: str
    cells: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    agg: CaseCells | None = None
    adequacy: Adequacy | None = None
    outlines: object = None  # the detector's CellTable
    not_analysed: str = ""
    seen: bool = False
    label: str = ""
    slide: tuple[float, float] | None = None  # a slide model's score and spread


@dataclass
class TriageResult:
    out: Path
    worklist: list[dict]
    lines: list[str]
    seconds: dict[str, float]


def run_triage(cfg: TriageConfig, progress=None, log=print) -> TriageResult:
    """Triage every case of ``cfg.input`` into ``cfg.out`` (see the module's docstring)."""
    from cytofm.pipeline.predict import run_predict
    from cytofm.pipeline.triage_gallery import write_outputs

    model_dir, out = Path(cfg.model), Path(cfg.out)
    model = SavedModel.read(model_dir, cfg.method)
    check_cell_model(model, model_dir)
    abnormal = abnormal_classes(list(model.classes), cfg.abnormal)
    source, full, folders = Path(cfg.input), None, [out / "prepared", out / "features"]
    t0, kept = time.perf_counter(), {}
    if cfg.first_pass:
        from cytofm.pipeline.triage_first_pass import first_pass

        source, full, kept = first_pass(cfg, out, progress, log)
        folders = [full, out / "first_pass" / "features"]
    first = time.perf_counter() - t0
    res = run_predict(model_dir, source, out, cfg.use, cfg.include_seen, heatmaps=0,
                      progress=progress, log=log, method=cfg.method, device=cfg.device)
    t0 = time.perf_counter()
    cases = gather_cases(res.cells, out, cfg, full, folders)
    classes = list(model.classes)
    for c in cases:
        if not c.not_analysed:
            c.agg = aggregate(res.cells.probs[:, c.cells], abnormal, cfg.score, cfg.score_cells)
    threshold, op_lines = slide_scores(cases, res.cells, classes, abnormal, cfg, out, log)
    if threshold is None or cfg.threshold is not None or cfg.operating_point or cfg.label:
        threshold, more = choose_threshold(cases, cfg, out)
        op_lines += more
    worklist = build_worklist([case_score(c) for c in cases], threshold, cfg.qc_share, cfg.seed)
    by_id = {c.id: c for c in cases}
    for r in worklist:
        c = by_id[r["case"]]
        r.update({**(c.adequacy.row() if c.adequacy else {"n_cells": 0}), "seen": c.seen, "label": c.label,
                  "image": c.image})
        if c.agg is not None:
            r.update({k: v for k, v in case_summary(c.agg, classes, abnormal).items() if k != "n_cells"})
    write_csv(out / "worklist.csv", worklist)
    write_outputs(out, cases, res.cells, worklist, classes, abnormal, cfg)
    n = worklist_summary(worklist)
    lines = [f"triage of {len(cases)} case(s): {n['review']} to review, {n['no further review']} no further "
             f"review ({n['qc_rescreen']} drawn for a QC rescreen, share {cfg.qc_share:g}, seed {cfg.seed}), "
             f"{n['could not analyse']} could not be analysed", *op_lines]
    lines += [f"could not analyse {r['case']}: {r['reason']}" for r in worklist
              if r["decision"] == "could not analyse"][:10]
    seconds = {"first_pass": first, **res.seconds, "triage": time.perf_counter() - t0}
    record = {"classes": classes, "abnormal": [classes[k] for k in abnormal], "threshold": threshold,
              "settings": cfg.model_dump(), "counts": n, "first_pass": kept, "seconds": seconds,
              "note": ESTIMATE_NOTE}
    (out / "triage.json").write_text(strict_json(record))
    return TriageResult(out, worklist, lines + [ESTIMATE_NOTE], seconds)


def slide_scores(cases: list[Case], pred, classes: list[str], abnormal: list[int], cfg: TriageConfig,
                 out: Path, log) -> tuple[float | None, list[str]]:
    """The slide stores written; with ``--slide-model``, each analysed case's score replaced by the slide
    model's and its operating point returned (None otherwise)."""
    from cytofm.pipeline.triage_slides import apply_slide_model, write_slide_stores

    stores = write_slide_stores(out, cases, pred, classes, abnormal, cfg.top_k, Path(cfg.model))
    if not cfg.slide_model or not stores:
        return None, []
    scores, threshold, pos = apply_slide_model(Path(cfg.slide_model), stores, out, log)
    for c in cases:
        if c.agg is not None:
            c.slide = scores[c.id]
    return threshold, [f"case score: the slide model {cfg.slide_model}'s probability of {pos!r}"
                       + (f", its operating point {threshold:.4g}" if threshold is not None else
                          " (it records no operating point)")]


def case_score(c: Case) -> CaseScore:
    if c.not_analysed:
        return CaseScore(c.id, not_analysed=c.not_analysed)
    force = f"adequacy unsatisfactory: {'; '.join(c.adequacy.reasons)}" if (
        c.adequacy and c.adequacy.verdict == "unsatisfactory") else ""
    score, spread = c.slide if c.slide is not None else (c.agg.score, c.agg.spread)
    return CaseScore(c.id, score, spread, force_review=force)


def gather_cases(pred, out: Path, cfg: TriageConfig, full: Path | None = None,
                 folders: list[Path] = ()) -> list[Case]:
    """Every case of the input: each item of the store with its cells and the detector's adequacy (from
    ``full``'s cells where a first pass kept only some), and each source left out in ``folders`` (prepare's
    and extract's skipped.csv) with its reason (could not analyse)."""
    from cytofm.data.cells.store import read_cells

    by_field: dict[str, list[int]] = {}
    for k, c in enumerate(pred.cells):
        by_field.setdefault(c["field"], []).append(k)
    flagged = {t["field"] for t in pred.table if t.get("excluded")}
    cases = []
    for r in pred.rows:
        h5 = pred.prepared / "cells" / f"{r['id']}.h5" if pred.prepared else None
        outlines = read_cells(h5) if h5 is not None and h5.is_file() else None
        c = Case(r["id"], str(Path(r["path"]).resolve()) if r.get("path") else "",
                 np.array(by_field.get(r["id"], []), int), outlines=outlines, seen=r["id"] in flagged,
                 label=str(r.get(cfg.label, "") or "") if cfg.label else "")
        every = read_cells(full / "cells" / f"{r['id']}.h5") if full is not None else outlines
        if every is not None:
            m = every.measures
            c.adequacy = assess(m["area_um2"], m["focus"], m["seg_confidence"], every.clump, cfg.adequacy)
            c.not_analysed = c.adequacy.not_analysed
        if not c.not_analysed and not len(c.cells):
            c.not_analysed = "no cells found"
        cases.append(c)
    have = {c.id for c in cases}
    for c in left_out([pred.prepared, *folders]):
        if c.id not in have:
            have.add(c.id)
            cases.append(c)
    return cases


def left_out(folders: list[Path | None]) -> list[Case]:
    """The sources prepare or extract left out (each folder's skipped.csv), as cases that could not be
    analysed: an unreadable file, no um/px, blank glass or no cell, a stain that could not be estimated."""
    from cytofm.utils.io import read_csv

    cases, seen = [], set()
    for folder in [f for f in folders if f is not None and f not in seen and not seen.add(f)]:
        p = folder / "skipped.csv"
        for r in read_csv(p) if p.is_file() else []:
            cases.append(Case(Path(r["path"]).stem, str((folder / r["path"]).resolve()),
                              not_analysed=reason_of(r["reason"])))
    return cases


def reason_of(message: str) -> str:
    """A left-out source's reason in the worklist's words, the original message after it."""
    low = message.lower()
    if "um/px" in low or "resolution" in low or "mpp" in low:
        return f"no um/px: {message}"
    if "foreground" in low or "blank" in low or "no cell" in low:
        return f"no cells found: {message}"
    if "stain" in low:
        return f"stain not estimable: {message}"
    return f"unreadable: {message}"


def choose_threshold(cases: list[Case], cfg: TriageConfig, out: Path) -> tuple[float | None, list[str]]:
    """The operating point: given (``threshold``), a previous triage's (``operating_point``), chosen out of
    fold on the labelled cases here (``label``; written to operating_point.json), or none (every case
    "review", and the lines say so)."""
    from cytofm.eval.operating_point import out_of_fold_operating_point

    if cfg.threshold is not None:
        return cfg.threshold, [f"operating point: threshold {cfg.threshold:g} (given)"]
    if cfg.operating_point:
        p = Path(cfg.operating_point)
        try:
            t = float(json.loads(p.read_text())["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TriageError(f"--operating-point {p}: not an operating_point.json with a threshold "
                              f"({e})") from e
        return t, [f"operating point: threshold {t:g} from {p}"]
    if not cfg.label:
        return None, ["no operating point (give --threshold, --operating-point, or --label on labelled "
                      "cases): every analysed case is listed for review, in order of risk"]
    known = [c for c in cases if c.agg is not None and c.label.strip()]
    pos = np.array([c.label.strip().casefold() in {p.casefold() for p in cfg.positive} for c in known])
    try:
        scores = np.array([case_score(c).score for c in known])
        op = out_of_fold_operating_point(pos, scores, cfg.target_sensitivity, cfg.folds, cfg.seed)
    except ValueError as e:
        raise TriageError(f"--label {cfg.label}: {e} (found {int(pos.sum())} positive and "
                          f"{int((~pos).sum())} negative labelled cases)") from e
    (out / "operating_point.json").write_text(strict_json({**op, "score": cfg.score, "label": cfg.label,
                                                           "positive": list(cfg.positive)}))
    return op["threshold"], [
        f"operating point chosen on {len(known)} labelled cases for sensitivity {cfg.target_sensitivity:g}: "
        f"threshold {op['threshold']:.4g}; out of fold ({op['folds']} folds) sensitivity "
        f"{op['sensitivity']:.3f}, specificity {op['specificity']:.3f}, no further review "
        f"{op['no_further_review_share']:.1%} of the cases (written to {out / 'operating_point.json'})"]
