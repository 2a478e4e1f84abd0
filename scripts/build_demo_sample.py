"""Draw the sample `cytofm demo` ships (seeded) from ../shared/data into src/cytofm/demo_data/.

    python scripts/build_demo_sample.py [../shared/data]

Every image comes from the EVALUATION part of the shipped split (cytofm.data.provenance.split_files), so the shipped
encoder has seen none of them. Inside the sample, a demo-pretraining part (BCCD and chula_rbc12 fields the
demo's fresh encoder pretrains on, `pretrain.csv`) is kept apart from what is evaluated: BCCD fields with one
white cell (`manifest.csv`, field-level ABMIL with boxes) and the red cells annotated on other chula_rbc12
fields (`cells.csv`, the cell-level headline task). Files are copied byte for byte (their SHA-256 matches
the shared originals).
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from pathlib import Path

from cytofm.data.provenance.split_files import load_split
from cytofm.utils.io import write_csv

OUT = Path(__file__).resolve().parents[1] / "src" / "cytofm" / "demo_data"
WBC_TYPES = ("neutrophil", "eosinophil", "lymphocyte", "monocyte")
PER_TYPE = 15  # BCCD fields per white-cell type for the ABMIL task (fewer where the evaluation part has fewer)
BCCD_PRETRAIN = 20  # further BCCD evaluation-part fields for the demo's own pretraining
CHULA_CELLS = 900  # at least this many annotated red cells for the headline task
CHULA_PRETRAIN = 15


def _rows(p: Path) -> list[dict]:
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def bccd(src: Path, dst: Path, rng: random.Random) -> None:
    split = load_split("bccd")
    rows = [r for r in _rows(src / "manifest.csv") if split.get(r["image"]) == "eval"]
    evaluated = []
    for t in WBC_TYPES:
        one = [r for r in rows if r["wbc_type"] == t and r["n_wbc"] == "1"]
        evaluated += rng.sample(one, min(PER_TYPE, len(one)))
    taken = {r["image"] for r in evaluated}
    rest = sorted((r for r in rows if r["image"] not in taken), key=lambda r: r["image"])
    pretrain = rng.sample(rest, BCCD_PRETRAIN)
    for r in evaluated + pretrain:
        for col in ("image", "annotation"):
            (dst / r[col]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / r[col], dst / r[col])
    header = list(rows[0])
    write_csv(dst / "manifest.csv", sorted(evaluated, key=lambda r: r["image"]), header)
    write_csv(dst / "pretrain.csv", [{"image": r["image"]} for r in sorted(pretrain, key=lambda r: r["image"])], ["image"])
    shutil.copyfile(src / "LICENSE", dst / "LICENSE")
    print(f"bccd: {len(evaluated)} evaluated fields, {len(pretrain)} demo-pretraining fields")


def chula(src: Path, dst: Path, rng: random.Random) -> None:
    split = load_split("chula_rbc12")
    fields = sorted(r["path"] for r in _rows(src / "manifest.csv") if split.get(r["path"]) == "eval")
    cells = [r for r in _rows(src / "cells.csv") if split.get(r["image"]) == "eval"]
    per_field: dict[str, list[dict]] = {}
    for r in cells:
        per_field.setdefault(r["image"], []).append(r)
    labelled = sorted(per_field)
    rng.shuffle(labelled)
    evaluated, n = [], 0
    for f in labelled:
        if n >= CHULA_CELLS:
            break
        evaluated.append(f)
        n += len(per_field[f])
    rest = sorted(set(fields) - set(evaluated))
    pretrain = rng.sample(rest, CHULA_PRETRAIN)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for f in evaluated + pretrain:
        shutil.copyfile(src / f, dst / f)
    kept = [r for f in sorted(evaluated) for r in per_field[f]]
    write_csv(dst / "cells.csv", kept, list(cells[0]))
    write_csv(dst / "pretrain.csv", [{"image": f} for f in sorted(pretrain)], ["image"])
    shutil.copyfile(src / "LICENSE", dst / "LICENSE")
    counts: dict[str, int] = {}
    for r in kept:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    print(f"chula_rbc12: {len(evaluated)} evaluated fields with {len(kept)} red cells "
          f"{dict(sorted(counts.items(), key=lambda kv: -kv[1]))}; {len(pretrain)} demo-pretraining fields")


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    rng = random.Random(0)
    for name, fn in (("bccd", bccd), ("chula_rbc12", chula)):
        dst = OUT / name
        keep = {"README.md"}
        if dst.exists():
            for p in dst.iterdir():
                if p.name not in keep:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        dst.mkdir(parents=True, exist_ok=True)
        fn(data / name, dst, rng)


if __name__ == "__main__":
    main()
