"""Near-duplicate report of image sets (the rule and thresholds of ``cytofm.data.provenance.duplicates``).

    python scripts/duplicate_report.py ../shared/data/bccd ../shared/data/herlev ../shared/data/cric \
        --out docs/benchmarks/duplicates.md

Each argument is a folder with a ``manifest.csv`` whose first column names the image (relative path); a
label column, when given with ``--label NAME=COLUMN``, counts pairs whose labels differ.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

from cytofm.data.provenance.duplicates import (
    CANDIDATE_BITS,
    PHASH_BITS,
    THUMB_MAD,
    merge_groups,
    near_duplicate_pairs,
)
from cytofm.data.provenance.hashing import hash_image


def report(folder: Path, label: str | None) -> tuple[str, list[str]]:
    rows = list(csv.DictReader(open(folder / "manifest.csv", newline="")))
    col = next(iter(rows[0]))
    names = [r[col] for r in rows]
    pairs = near_duplicate_pairs([hash_image(folder / n) for n in names])
    groups = merge_groups(len(names), pairs)
    multi = {g for g in groups if (groups == g).sum() > 1}
    cross = sum(rows[p.i][label] != rows[p.j][label] for p in pairs) if label else 0
    by_rule = sum(p.bits <= PHASH_BITS for p in pairs)
    line = (f"| {folder.name} | {len(names)} | {len(pairs)} | {by_rule} | {len(pairs) - by_rule} | "
            f"{len({k for p in pairs for k in (p.i, p.j)})} | {len(multi)} | {cross if label else 'n/a'} |")
    detail = [f"| {folder.name} | {names[p.i]} | {names[p.j]} | {p.bits} | {p.mad:.1f} | "
              + (f"{rows[p.i][label]} / {rows[p.j][label]}" if label else "") + " |" for p in pairs]
    return line, detail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--label", action="append", default=[], help="NAME=COLUMN, e.g. herlev=label7")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--list-max", type=int, default=40, help="pairs listed per set")
    a = ap.parse_args()
    labels = dict(x.split("=", 1) for x in a.label)
    lines, details = [], []
    for f in a.folders:
        line, detail = report(f, labels.get(f.name))
        lines.append(line)
        details += detail[: a.list_max] + ([f"| {f.name} | ... {len(detail) - a.list_max} more | | | | |"]
                                           if len(detail) > a.list_max else [])
        print(line)
    cmd = shlex.join(["python", "scripts/duplicate_report.py", *sys.argv[1:]])
    md = ["# Near-duplicate images", "", "Produced by (from the repository root):", "", "```bash", cmd, "```", "",
          "The rule, and how its thresholds were chosen on these sets, is `cytofm.data.provenance.duplicates` (the one "
          "`cytofm benchmark` applies: pairs in `OUT/<task>/duplicates.csv`, kept on one side of every split unless "
          "`group_duplicates: false`). Pairs found by pHash alone within the first threshold include look-alike "
          "cells that are not the same cell (e.g. Herlev pairs with different labels); grouping them costs the "
          "splits a little freedom, never validity.", "",
          f"Near-duplicate images: 64-bit pHash (imagehash) within {PHASH_BITS} bits, or within {CANDIDATE_BITS} "
          f"bits with a mean absolute difference of the 32x32 RGB thumbnails of at most {THUMB_MAD:g}/255.", "",
          "| set | images | pairs | by pHash alone | by thumbnail | images in pairs | groups of 2+ | pairs with different labels |",
          "|---|---|---|---|---|---|---|---|", *lines, "", "| set | image | image | pHash bits | thumbnail MAD | labels |",
          "|---|---|---|---|---|---|", *details]
    a.out.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
