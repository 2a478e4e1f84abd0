"""The white-cell differential per field from `cytofm triage`, against BCCD's annotated white-cell type.

A cell classifier is trained (`probe --cell-points`) on the detected cells of BCCD's pretraining-part fields,
labelled from the annotation boxes: each red-cell and platelet box's centre as `red_cell` / `platelet`, the
white cell's as its field's type (neutrophil, eosinophil, lymphocyte, monocyte; basophil, mixed and unknown
fields left out: 3, 8 and 1 fields). `triage` then counts the evaluation-part fields' cells by class
(`differential.csv`, confident cells only; the rest in `unidentified`). A field's reported white cell is
its most confident white-cell-class cell; reported: how often its class is the annotated type (accuracy and
balanced accuracy over fields, with a 95% bootstrap interval), how often the field's differential holds
exactly one white cell, and the mean number of white cells counted per field (BCCD fields hold one).

    python benchmarks/triage_differential.py [--encoders cytofm,morphometrics]   # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import add_data_option, data_folder  # noqa: E402
from triage import _read, cytofm  # noqa: E402

MPP = 0.074  # BCCD: its median red-cell box, 102 px, taken as a 7.5 um red cell (docs/benchmarks/cells.md)
TYPES = ("neutrophil", "eosinophil", "lymphocyte", "monocyte")


def _boxes(xml: Path) -> list[tuple[float, float, str]]:
    out = []
    for o in ET.parse(xml).getroot().iter("object"):
        b = o.find("bndbox")
        x0, y0, x1, y1 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append(((x0 + x1) / 2, (y0 + y1) / 2, o.find("name").text.strip()))
    return out


def write_inputs(data: Path, work: Path) -> dict[str, Path]:
    from cytofm.data.provenance.split_files import part_of
    from cytofm.utils.io import write_csv

    root = data / "bccd"
    rows = {r["image"]: r for r in _read(root / "manifest.csv") if r["wbc_type"] in TYPES}
    out = {}
    for part in ("pretrain", "eval"):
        fields = [f for f in part_of("bccd", part) if f in rows]
        out[part] = write_csv(work / f"bccd_{part}_fields.csv", [
            {"image": str(root / f), "mpp": MPP, "wbc_type": rows[f]["wbc_type"]} for f in fields])
        if part == "pretrain":
            names = {"RBC": "red_cell", "Platelets": "platelet"}
            pts = [{"image": str(root / f), "x": x, "y": y, "type": names.get(n, rows[f]["wbc_type"])}
                   for f in fields for x, y, n in _boxes(root / rows[f]["annotation"])]
            out["points"] = write_csv(work / "bccd_points.csv", pts)
    return out


def build(work: Path, inputs: dict[str, Path], enc: str) -> tuple[Path, Path]:
    for part in ("pretrain", "eval"):
        prep, store = work / f"bccd_prep_{part}", work / f"bccd_store_{part}_{enc}"
        if not (prep / "manifest.csv").is_file():
            cytofm("prepare", str(inputs[part]), "--out", str(prep), "--preset", "smear_cells", "--cells")
        if not (store / "manifest.csv").is_file():
            t0 = time.perf_counter()
            cytofm("extract", "--input", str(prep), "--mode", "cells", "--encoder", enc, "--out", str(store))
            print(f"extract --mode cells bccd {part} with {enc}: {time.perf_counter() - t0:.0f} s")
    probe = work / f"bccd_cell_probe_{enc}"
    if not (probe / "model.json").is_file():
        cytofm("probe", "--features", str(work / f"bccd_store_pretrain_{enc}"), "--label", "type",
               "--cell-points", str(inputs["points"]), "--out", str(probe), "--folds", "5", "--seeds", "0",
               "--methods", "linear")
    return probe, work / f"bccd_store_eval_{enc}"


def score(triage: Path, truth: dict[str, str]) -> None:
    from cytofm.eval.metrics import bootstrap_ci, classification_metrics

    cells: dict[str, list[dict]] = {}
    for c in _read(triage / "predictions.csv"):
        cells.setdefault(c["field"], []).append(c)
    diff = {d["case"]: d for d in _read(triage / "differential.csv")}
    y, pred, counted = [], [], []
    for case, t in truth.items():
        if case not in cells:
            continue
        best = max(cells[case], key=lambda c: max(float(c[f"p_{k}"]) for k in TYPES))
        y.append(TYPES.index(t))
        pred.append(TYPES.index(max(TYPES, key=lambda k: float(best[f"p_{k}"]))))
        counted.append(sum(int(diff[case][f"n_{k}"]) for k in TYPES) if case in diff else 0)
    y, pred, counted = np.array(y), np.array(pred), np.array(counted)
    proba = np.eye(len(TYPES))[pred]
    ci = bootstrap_ci(y, proba, len(TYPES)).get("balanced_accuracy", (np.nan, np.nan))
    bal = classification_metrics(y, proba, len(TYPES))["balanced_accuracy"]
    print(f"  {len(y)} fields: the field's white cell typed as annotated in {np.mean(y == pred):.1%}; "
          f"balanced accuracy {bal:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]; "
          f"exactly one white cell counted in {np.mean(counted == 1):.1%} of the fields, "
          f"{counted.mean():.2f} per field on average (the annotation: 1)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(ap)
    ap.add_argument("--work", default="triage-bench/bccd")
    ap.add_argument("--encoders", default="cytofm,morphometrics")
    a = ap.parse_args()
    data = data_folder(a.data, "bccd", "triage")
    if data is None:
        return 0
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(data, work)
    truth = {Path(r["image"]).stem: r["wbc_type"] for r in _read(inputs["eval"])}
    print(f"BCCD: {len(truth)} evaluation-part fields; cell classifier on {len(_read(inputs['points']))} "
          f"labelled boxes of {len(_read(inputs['pretrain']))} pretraining-part fields")
    for enc in a.encoders.split(","):
        probe, store = build(work, inputs, enc)
        out = work / f"bccd_triage_{enc}"
        if not (out / "differential.csv").is_file():
            cytofm("triage", "--model", str(probe), "--input", str(store), "--out", str(out), "--abnormal",
                   ",".join(TYPES))
        print(f"\n{enc}:")
        score(out, truth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
