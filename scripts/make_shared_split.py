"""Draw the fixed pretraining/evaluation split of ../shared/data once (seed 0) into src/cytofm/data/splits/.

    python scripts/make_shared_split.py [../shared/data]

Near-duplicate images (perceptual hash rule of cytofm.data.provenance.duplicates) form groups that stay on one side;
within each label 40% of the groups go to evaluation. Re-running with the same data gives the same files.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from cytofm.data.provenance.duplicates import merge_groups, near_duplicate_pairs
from cytofm.data.provenance.hashing import hash_image

OUT = Path(__file__).resolve().parents[1] / "src" / "cytofm" / "data" / "splits"
EVAL_SHARE = 0.4
# dataset: (image column, label column or None, evaluation share)
SETS = {"bccd": ("image", "wbc_type", EVAL_SHARE), "herlev": ("image", "label7", EVAL_SHARE),
        "chula_rbc12": ("path", None, EVAL_SHARE), "cric": ("image", None, 0.0)}


def split(root: Path, name: str, seed: int = 0) -> list[tuple[str, str]]:
    col, label_col, share = SETS[name]
    rows = list(csv.DictReader(open(root / name / "manifest.csv", newline="")))
    images = [r[col] for r in rows]
    labels = [r[label_col] if label_col else "" for r in rows]
    if share == 0:
        return [(im, "pretrain") for im in images]
    hashes = [hash_image(root / name / im) for im in images]
    groups = merge_groups(len(images), near_duplicate_pairs(hashes))
    by_label: dict[str, list[int]] = defaultdict(list)
    for g in sorted(set(groups.tolist())):
        by_label[labels[g]].append(g)  # a group's label: that of its first (lowest-index) member
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    eval_groups = set()
    for lab in sorted(by_label):
        gs = list(by_label[lab])
        rng.shuffle(gs)
        eval_groups |= set(gs[: int(round(share * len(gs)))])
    return [(im, "eval" if groups[k] in eval_groups else "pretrain") for k, im in enumerate(images)]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in SETS:
        rows = split(root, name)
        with open(OUT / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "part"])
            w.writerows(rows)
        n_eval = sum(p == "eval" for _, p in rows)
        print(f"{name}: {len(rows)} images, {len(rows) - n_eval} pretrain, {n_eval} eval")


if __name__ == "__main__":
    main()
