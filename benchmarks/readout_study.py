"""Which ViT readout should `cytofm extract` hand downstream? Chosen on the PRETRAINING parts of the shared
split only (never on evaluation data): the shipped encoder's cls, mean, cls+mean and last4 readouts on
Herlev 7-class (pretraining part, all cells) and chula_rbc12 red-cell morphology (crops around the points
of a seeded sample of pretraining-part fields), linear probe and kNN, 5 folds x 3 seeds, paired against
the [CLS] readout with the benchmark's intervals (Holm across the table).

Usage: python benchmarks/readout_study.py OUT [--data ../shared/data] [--fields 40] [--encoder cytofm]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

from cytofm.config.loader import build_config
from cytofm.data.provenance.split_files import load_split
from cytofm.eval.config import BenchmarkConfig
from cytofm.pipeline.benchmark import run_benchmark
from cytofm.utils.io import write_csv


def chula_points(data: Path, out: Path, n_fields: int, seed: int = 0, part: str = "pretrain") -> Path:
    """The annotated cells of ``n_fields`` fields of one part of the split (seeded), with absolute image
    paths."""
    split = load_split("chula_rbc12")
    with open(data / "chula_rbc12" / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = sorted({r["image"] for r in rows if split.get(r["image"]) == part})
    pick = set(random.Random(seed).sample(fields, min(n_fields, len(fields))))
    keep = [dict(r, image=str((data / "chula_rbc12" / r["image"]).resolve()))
            for r in rows if r["image"] in pick]
    p = out / f"chula_{part}_points.csv"
    write_csv(p, keep, list(rows[0]))
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--fields", type=int, default=40)
    ap.add_argument("--encoder", default="cytofm")
    a = ap.parse_args()
    if (not (a.data / "herlev" / "manifest.csv").is_file()
            or not (a.data / "chula_rbc12" / "cells.csv").is_file()):
        sys.exit(f"shared data not found under {a.data} (needs herlev/ and chula_rbc12/)")
    a.out.mkdir(parents=True, exist_ok=True)
    points = chula_points(a.data, a.out, a.fields)
    readouts = ["cls", "mean", "cls+mean", "last4"]
    encs = [a.encoder if r == "cls" else f"{a.encoder}#pool={r}" for r in readouts]
    herlev = str((a.data / "herlev" / "manifest.csv").resolve())
    cfg = build_config(BenchmarkConfig, values={
        "encoders": encs, "comparisons": [f"{e} vs {encs[0]}" for e in encs[1:]], "baselines": [],
        "tasks": [
            {"name": "herlev_7class_pretrain_part", "data": herlev, "split": "cytofm:herlev",
             "part": "pretrain", "label": "label7", "mode": "image", "eval": "probe",
             "methods": ["linear", "knn"]},
            {"name": "chula_rbc_type_pretrain_part", "data": str(points), "points": str(points),
             "label": "type", "crop_size": 80, "group_column": "field", "group_duplicates": False,
             "exclude": ["uncategorised"],  # not a morphology type, and on too few fields for 5 folds
             "mode": "image", "eval": "probe", "methods": ["linear", "knn"]},
        ]})
    t0 = time.perf_counter()
    run_benchmark(cfg, a.out, a.out, log=print)
    print((a.out / "results.md").read_text())
    print(f"readout study finished in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
