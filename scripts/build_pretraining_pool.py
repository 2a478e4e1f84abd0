"""Gather the pretraining parts of the shared data sets into one pool folder, and hash what went in.

    python scripts/build_pretraining_pool.py ../shared/data POOL [--quality chula_rbc12=90 --quality cric=95] \
        [--record POOL/pretraining.csv.gz]

Only images the shipped split files (``cytofm.data.split_files``) put in the ``pretrain`` part are taken:
the evaluation parts never reach a pretraining run. ``POOL/<dataset>/<relpath>`` keeps each image's path
relative to its data set, so a pool is checked against the split by name. ``--quality D=Q`` re-encodes data
set D as JPEG quality Q (to fit a pool into a transfer limit; images with a side <= 64 px become PNG, where
JPEG blocks would be a large part of the cell); without it the source bytes are copied. ``--record`` writes
the pretraining record (SHA-256 and perceptual hash of every ORIGINAL image, as an evaluation sees it).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from cytofm.data.hashing import hash_image
from cytofm.data.pretraining_record import write_record
from cytofm.data.split_files import DATASETS, part_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shared", type=Path, help="folder holding bccd/, herlev/, chula_rbc12/, cric/")
    ap.add_argument("out", type=Path)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--quality", action="append", default=[], metavar="DATASET=Q")
    ap.add_argument("--limit", type=int, default=0, help="first N images of each data set (a quick test pool)")
    ap.add_argument("--record", type=Path)
    a = ap.parse_args()
    quality = {k: int(v) for k, v in (q.split("=", 1) for q in a.quality)}
    rows = []
    for ds in a.datasets.split(","):
        names = part_of(ds, "pretrain")
        if a.limit:
            names = names[: a.limit]
        src_root = a.shared / ds
        missing = [n for n in names if not (src_root / n).is_file()]
        if missing:
            raise SystemExit(f"{src_root}: {len(missing)} pretraining images of the split are missing "
                             f"(first: {missing[0]})")
        total = 0
        for n in names:
            src, dst = src_root / n, a.out / ds / n
            dst.parent.mkdir(parents=True, exist_ok=True)
            if ds in quality:
                im = Image.open(src).convert("RGB")
                if max(im.size) <= 64:
                    dst = dst.with_suffix(".png")
                    im.save(dst)
                else:
                    dst = dst.with_suffix(".jpg")
                    im.save(dst, "JPEG", quality=quality[ds])
            else:
                shutil.copyfile(src, dst)
            total += dst.stat().st_size
            if a.record:
                h = hash_image(src)
                rows.append({"dataset": ds, "relpath": n, "sha256": h.sha256, "phash": h.phash})
        print(f"{ds}: {len(names)} pretraining images, {total / 2**20:.1f} MiB in the pool")
    if a.record:
        write_record(rows, a.record)
        print(f"wrote {a.record} ({len(rows)} images)")


if __name__ == "__main__":
    main()
