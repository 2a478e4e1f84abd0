"""Triage measured on a screening question a haematology lab asks: which blood films hold schistocytes?

chula_rbc12 fields are the cases (evaluation part only; the shipped encoder never saw them). A field is
positive when its labelled cells include at least one of the class asked about (schistocyte; teardrop
cells and spherocytes as the second and third questions), negative when it has labelled cells and none of
that class; fields without any labelled cell are left out (nothing to say about them). Only some cells of a
field are labelled, so a "negative" field may hold an unlabelled abnormal cell: the truth is the labels'.

The whole path runs through the commands a lab would run: `prepare --cells` of both parts, `extract --mode
cells` with each encoder, `probe --cell-points` on the pretraining part's labelled cells (the cell
classifier), `triage` of the evaluation part for each question, and the slide models (`probe` over the
counts, `mil` over the top cells) on the slide stores triage writes. Reported per encoder and question:

- top-10 gallery precision on the positive cases: each gallery cell matched to a labelled point (within the
  probe's own matching tolerance); precision among the matched cells (unlabelled cells left out), and the
  strict share of the 10 that are labelled cells of the class (unlabelled ones counted as misses);
- case-level AUROC of the burden and top-cells scores with a 95% percentile bootstrap over cases, and of
  the two slide models (their cross-validated AUROC and 95% interval, as `probe` and `mil` report it);
- the share of cases under "no further review" at the operating point chosen out of fold for sensitivity
  0.95 (5 folds; each fold decided by the threshold of the other four), with the sensitivity reached.

    python benchmarks/triage.py                 # about 30 min on 2 cores; cached under --work
    python benchmarks/triage.py --pretrain-fields 40 --eval-fields 60   # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import add_data_option, data_folder  # noqa: E402

MPP = 0.19  # chula_rbc12: a 7.5 um red cell at its median labelled size (docs/benchmarks/cells.md)
QUESTIONS = ("schistocyte", "teardrop", "spherocyte")
ENCODERS = ("cytofm", "morphometrics")


def cytofm(*args: str) -> None:
    exe = Path(sys.executable).parent / "cytofm"
    r = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"cytofm {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_inputs(data: Path, work: Path, n_pre: int, n_eval: int) -> dict[str, Path]:
    """The two parts' field manifests (with each question's answer as a column) and the pretraining
    part's labelled points."""
    from cytofm.data.provenance.split_files import part_of
    from cytofm.utils.io import write_csv

    root = data / "chula_rbc12"
    cells = _read(root / "cells.csv")
    by_image: dict[str, list[dict]] = {}
    for c in cells:
        by_image.setdefault(c["image"], []).append(c)
    out = {}
    for part, n in (("pretrain", n_pre), ("eval", n_eval)):
        fields = [f for f in part_of("chula_rbc12", part) if f in by_image][:n]
        rows = [{"image": str(root / f), "mpp": MPP,
                 **{q: "yes" if any(c["type"] == q for c in by_image[f]) else "no" for q in QUESTIONS}}
                for f in fields]
        out[part] = write_csv(work / f"{part}_fields.csv", rows)
        if part == "pretrain":
            pts = [{"image": str(root / c["image"]), "x": c["x"], "y": c["y"], "type": c["type"]}
                   for f in fields for c in by_image[f]]
            out["points"] = write_csv(work / "pretrain_points.csv", pts)
    return out


def build(work: Path, inputs: dict[str, Path], encoder: str, log) -> dict[str, Path]:
    """prepare, extract, probe: the cached stores and the cell classifier of ``encoder``."""
    prep = {p: work / f"prep_{p}" for p in ("pretrain", "eval")}
    for p, d in prep.items():
        if not (d / "manifest.csv").is_file():
            t0 = time.perf_counter()
            cytofm("prepare", str(inputs[p]), "--out", str(d), "--preset", "smear_cells", "--cells")
            log(f"prepare --cells {p}: {time.perf_counter() - t0:.0f} s")
    stores = {p: work / f"store_{p}_{encoder}" for p in prep}
    for p, d in stores.items():
        if not (d / "manifest.csv").is_file():
            t0 = time.perf_counter()
            cytofm("extract", "--input", str(prep[p]), "--mode", "cells", "--encoder", encoder, "--out",
                   str(d))
            log(f"extract --mode cells {p} with {encoder}: {time.perf_counter() - t0:.0f} s")
    probe = work / f"cell_probe_{encoder}"
    if not (probe / "model.json").is_file():
        cytofm("probe", "--features", str(stores["pretrain"]), "--label", "type", "--cell-points",
               str(inputs["points"]), "--out", str(probe), "--folds", "5", "--seeds", "0", "--methods",
               "linear", "--exclude", "uncategorised")
    return {"eval": stores["eval"], "probe": probe}


def gallery_precision(triage: Path, data: Path, question: str, tol: float, k: int = 10) -> dict:
    """Top-``k`` gallery cells of the positive cases matched to the labelled points."""
    from cytofm.features.derived import match_points

    labels: dict[str, list] = {}
    for c in _read(data / "chula_rbc12" / "cells.csv"):
        labels.setdefault(Path(c["image"]).stem, []).append((float(c["x"]), float(c["y"]), c["type"]))
    work = {r["case"]: r for r in _read(triage / "worklist.csv")}
    hit = other = unlabelled = 0
    for case, r in work.items():
        if r["label"] != "yes":  # the case's answer to the question (triage --label)
            continue
        top = [g for g in _read(triage / "gallery.csv") if g["case"] == case and g["gallery"] == "top"][:k]
        stem = Path(r["image"]).stem
        pts = labels.get(stem, [])
        pairs = match_points(np.array([[float(g["x"]), float(g["y"])] for g in top]),
                             np.array([p[:2] for p in pts]), tol) if pts else []
        matched = {i: pts[j][2] for i, j in pairs}
        hit += sum(1 for t in matched.values() if t == question)
        other += sum(1 for t in matched.values() if t != question)
        unlabelled += len(top) - len(matched)
    n = hit + other + unlabelled
    return {"precision_labelled": hit / max(hit + other, 1), "precision_strict": hit / max(n, 1),
            "gallery_cells": n, "unlabelled_share": unlabelled / max(n, 1)}


def case_scores(triage: Path, question: str) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """The analysed cases' truth and their burden and top-cells scores (from the cell predictions)."""
    rows = sorted((r for r in _read(triage / "worklist.csv") if r["decision"] != "could not analyse"),
                  key=lambda r: r["case"])  # by case, so two runs' scores pair up
    cells: dict[str, list[float]] = {}
    for c in _read(triage / "predictions.csv"):
        cells.setdefault(c["field"], []).append(float(c[f"p_{question}"]))
    y = np.array([r["label"] == "yes" for r in rows])
    burden = np.array([np.mean(cells[r["case"]]) for r in rows])
    top = np.array([np.mean(sorted(cells[r["case"]])[-3:]) for r in rows])
    return y, {"burden": burden, "top": top}, [r["case"] for r in rows]


def auroc_ci(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    from cytofm.eval.metrics import bootstrap_ci, classification_metrics

    proba = np.stack([1 - s, s], 1)
    lo, hi = bootstrap_ci(y.astype(int), proba, 2).get("auroc", (np.nan, np.nan))
    return float(classification_metrics(y.astype(int), proba, 2)["auroc"]), lo, hi


def slide_models(triage: Path, question: str, work: Path) -> dict[str, tuple]:
    """The slide models' cross-validated AUROC and interval as `probe` and `mil` report them (mean over
    folds x seeds, corrected resampled t), and their out-of-fold probabilities (mean over seeds) per case."""
    out = {}
    for name, store, cmd, method in (
            ("counts (linear probe)", "counts", ["probe", "--methods", "linear"], "linear"),
            ("top cells (ABMIL)", "top_cells", ["mil", "--epochs", "30"], "abmil")):
        run = work / f"slide_{triage.name}_{store}"
        if not (run / "results.csv").is_file():
            cytofm(*cmd[:1], "--features", str(triage / "slides" / store), "--label", question, "--out",
                   str(run), "--folds", "5", "--seeds", "0,1,2", *cmd[1:])
        r = next(x for x in _read(run / "results.csv") if x["metric"] == "auroc")
        p: dict[str, list[float]] = {}
        truth = {}
        for x in _read(run / f"predictions_{method}.csv"):
            p.setdefault(x["id"], []).append(float(x["p_yes"]))
            truth[x["id"]] = x["label"] == "yes"
        ids = sorted(p)
        out[name] = (float(r["mean"]), float(r["ci95_low"]), float(r["ci95_high"]),
                     np.array([truth[i] for i in ids]), np.array([np.mean(p[i]) for i in ids]))
    return out


def paired_lines(work: Path, question: str) -> list[str]:
    from cytofm.eval.metrics import paired_difference

    (y, a, ids), (_, b, ids2) = (case_scores(work / f"triage_{e}_{question}", question)
                                 for e in ("cytofm", "morphometrics"))
    if ids != ids2:
        return [f"  {question}: the two runs analysed other cases; not paired"]
    out = []
    for name in a:
        d, (lo, hi) = paired_difference(y.astype(int), np.stack([1 - a[name], a[name]], 1),
                                        np.stack([1 - b[name], b[name]], 1), 2, metric="auroc")
        out.append(f"  {question:<12} {name:<7} AUROC cytofm - morphometrics {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return out


def first_pass_retention(work: Path, question: str, top: int = 30) -> list[str]:
    """The share of the full pipeline's ``top`` most abnormal cells (the shipped encoder's classifier on
    every cell) that a morphometrics first pass keeps among its candidates, over all the evaluation part's
    cells pooled as one slide, for candidate shares of 1% to 20% of the cells."""
    def p(enc: str) -> dict[str, float]:
        return {c["id"]: float(c[f"p_{question}"]) for c in _read(work / f"triage_{enc}_{question}" /
                                                                   "predictions.csv")}

    full, cheap = p("cytofm"), p("morphometrics")
    ids = sorted(full)
    if set(ids) != set(cheap):
        return [f"  first pass: the two encoders' cells differ ({len(full)} and {len(cheap)}), not compared"]
    f = np.array([full[i] for i in ids])
    c = np.array([cheap[i] for i in ids])
    best = set(np.argsort(-f, kind="stable")[:top].tolist())
    out = []
    for share in (0.01, 0.02, 0.05, 0.10, 0.20):
        n = int(round(share * len(ids)))
        kept = len(best & set(np.argsort(-c, kind="stable")[:n].tolist()))
        out.append(f"  first pass keeps {kept}/{top} ({kept / top:.0%}) of the full pipeline's top {top} "
                   f"with {n} candidates ({share:.0%} of {len(ids)} cells)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(ap)
    ap.add_argument("--work", default="triage-bench", help="cache folder (reused by a re-run)")
    ap.add_argument("--pretrain-fields", type=int, default=150)
    ap.add_argument("--eval-fields", type=int, default=10_000)
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    a = ap.parse_args()
    data = data_folder(a.data, "chula_rbc12", "triage")
    if data is None:
        return 0
    from cytofm.eval.operating_point import out_of_fold_operating_point

    work = Path(a.work).resolve() / f"pretrain{a.pretrain_fields}_eval{a.eval_fields}"
    work.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(data, work, a.pretrain_fields, a.eval_fields)
    print(f"cases: {len(_read(inputs['eval']))} labelled evaluation-part fields; cell classifier trained "
          f"on {len(_read(inputs['points']))} labelled cells of {len(_read(inputs['pretrain']))} "
          "pretraining-part fields")
    for enc in a.encoders.split(","):
        built = build(work, inputs, enc, print)
        tol = json.loads((built["probe"] / "cells" / "matching.json").read_text())["tolerance_px"]
        for q in QUESTIONS:
            t0 = time.perf_counter()
            triage = work / f"triage_{enc}_{q}"
            if not (triage / "worklist.csv").is_file():
                cytofm("triage", "--model", str(built["probe"]), "--input", str(built["eval"]), "--out",
                       str(triage), "--abnormal", q, "--top-k", "30", "--label", q)
            took = time.perf_counter() - t0
            y, scores, _ = case_scores(triage, q)
            g = gallery_precision(triage, data, q, tol)
            print(f"\n{enc} / {q}: {int(y.sum())} positive of {len(y)} cases; triage {took:.0f} s")
            print(f"  top-10 gallery on positive cases: precision {g['precision_labelled']:.3f} among "
                  f"labelled cells, {g['precision_strict']:.3f} strict ({g['unlabelled_share']:.0%} of "
                  f"{g['gallery_cells']} cells unlabelled)")
            for name, s in scores.items():
                auc, lo, hi = auroc_ci(y, s)
                op = out_of_fold_operating_point(y, s, 0.95, 5, 0)
                print(f"  {name:<22} AUROC {auc:.3f} [{lo:.3f}, {hi:.3f}]; out of fold at sensitivity 0.95: "
                      f"no further review {op['no_further_review_share']:.1%} of cases, sensitivity "
                      f"{op['sensitivity']:.3f}, specificity {op['specificity']:.3f}")
            for name, (auc, lo, hi, yy, ss) in slide_models(triage, q, work).items():
                op = out_of_fold_operating_point(yy, ss, 0.95, 5, 0)
                print(f"  {name:<22} AUROC {auc:.3f} [{lo:.3f}, {hi:.3f}] (5 folds x 3 seeds); out-of-fold "
                      f"probabilities: no further review {op['no_further_review_share']:.1%}, sensitivity "
                      f"{op['sensitivity']:.3f}, specificity {op['specificity']:.3f}")
    if {"cytofm", "morphometrics"} <= set(a.encoders.split(",")):
        print("\nthe shipped encoder's cell classifier against the morphometrics one, case AUROC of the same "
              "score on the same cases (paired bootstrap over cases; one training of each classifier, so the "
              "interval leaves out training variation):")
        for q in QUESTIONS:
            print("\n".join(paired_lines(work, q)))
        for q in QUESTIONS:
            print(f"\nfirst pass (morphometrics) before the shipped encoder, {q}:")
            print("\n".join(first_pass_retention(work, q)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
