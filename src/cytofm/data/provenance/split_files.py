"""The fixed pretraining/evaluation split of the shared data sets, shipped as CSV files.

Encoders the project ships or reports pretrain on the ``pretrain`` part only; every number reported for
them comes from the ``eval`` part. Each file names images by their path relative to the data set's folder
(as its ``manifest.csv`` does), so any copy of the data finds them. The split was drawn once
(``scripts/make_shared_split.py``, seed 0): 40% of each label's groups to evaluation, where a group is a
set of near-duplicate images (:mod:`cytofm.data.provenance.duplicates`), so a duplicate never straddles the
split;
BCCD and ``chula_rbc12`` are split by field, Herlev by cell; CRIC (noisy labels) is pretraining only.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

DATASETS = ("bccd", "herlev", "chula_rbc12", "cric")
PARTS = ("pretrain", "eval")
SMEAR_MPP = {"bccd": 0.074, "chula_rbc12": 0.19}
"""um/px of the blood-smear sets, which record none: chula_rbc12's 20 um scale bar is 105 px; BCCD's median
red-cell box, 102 px, taken as a 7.5 um red cell (presets/benchmark/cells.yaml writes the same)."""


def split_file(dataset: str) -> Path:
    if dataset not in DATASETS:
        raise ValueError(f"no shipped split for '{dataset}'; known: {', '.join(DATASETS)}")
    return Path(str(resources.files("cytofm.data").joinpath("splits", f"{dataset}.csv")))


def load_split(dataset: str) -> dict[str, str]:
    """``{relative image path: "pretrain" | "eval"}``."""
    with open(split_file(dataset), newline="") as f:
        return {r["image"]: r["part"] for r in csv.DictReader(f)}


def part_of(dataset: str, part: str) -> list[str]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    return sorted(k for k, v in load_split(dataset).items() if v == part)


def write_part_manifest(root: str | Path, dataset: str, part: str, out: str | Path) -> Path:
    """``root/manifest.csv`` restricted to one part of the shipped split, written to ``out`` with absolute
    image paths (so it works from any folder); the other columns are kept."""
    root = Path(root)
    keep = set(part_of(dataset, part))
    with open(root / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        col = "image" if "image" in fields else "path"  # chula_rbc12's manifest names the column "path"
        rows = [r for r in reader if r.get(col) in keep]
    if not rows:
        raise ValueError(f"{root / 'manifest.csv'}: no image of the {part} part of the {dataset} split")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, **{k: str((root / r[k]).resolve()) for k in fields
                                if k in ("image", "path", "mask", "annotation") and r.get(k)}})
    return out
