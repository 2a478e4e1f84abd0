"""Paired comparisons of one encoder against others from a `cytofm benchmark` output's per-fold files.

    python scripts/compare_benchmark_folds.py BENCH_DIR A B [C ...]

A, B, ... are the encoders' folder names under each task (``cytofm``, ``handcrafted``,
``random_vit_small_patch16_224``...). Every task folder holding ``folds_<method>.csv`` for all of them is
used; A is compared with each other encoder on the same folds and seeds (corrected resampled t), with Holm's
adjustment across all the comparisons printed. Useful to add an encoder's comparisons to a finished run
(or to one whose last task failed) without evaluating again. Prints two markdown tables.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from cytofm.eval.compare import paired_fold_difference
from cytofm.eval.intervals import holm


def _folds(p: Path) -> list[dict]:
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    root, encs = Path(sys.argv[1]), sys.argv[2:]
    a = encs[0]
    print("| task | method | " + " | ".join(encs) + " |")
    print("|---|---|" + "---|" * len(encs))
    comps = []
    for task in sorted(d for d in root.iterdir() if d.is_dir() and d.name != "cache"):
        if not (task / a).is_dir():
            continue
        for f in sorted((task / a).glob("folds_*.csv")):
            m = f.stem.removeprefix("folds_")
            if not all((task / e / f.name).is_file() for e in encs):
                continue
            cells = []
            for e in encs:
                b = json.loads((task / e / f"summary_{m}.json").read_text())["balanced_accuracy"]
                cells.append(f"{b['mean']:.3f} [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}]")
            print(f"| {task.name} | {m} | " + " | ".join(cells) + " |")
            fa = _folds(f)
            ratio = float(np.mean([int(r["n_test"]) / int(r["n_train"]) for r in fa]))
            for e in encs[1:]:
                comps.append((task.name, m, e, paired_fold_difference(fa, _folds(task / e / f.name),
                                                                      "balanced_accuracy", ratio)))
    print()
    print(f"| task | method | {a} - B | difference [95% CI] | p | Holm p | holds |")
    print("|---|---|---|---|---|---|---|")
    for (t, m, e, iv), hp in zip(comps, holm([c[3].p for c in comps]), strict=True):
        holds = "yes" if hp < 0.05 else "no"
        print(f"| {t} | {m} | {e} | {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] | {iv.p:.3g} | {hp:.3g} | {holds} |")


if __name__ == "__main__":
    main()
