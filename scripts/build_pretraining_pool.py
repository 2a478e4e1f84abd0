"""Gather the pretraining parts of the shared data sets into one pool folder, and hash what went in.

    python scripts/build_pretraining_pool.py ../shared/data POOL [--quality chula_rbc12=90] \
        [--record POOL/pretraining.csv.gz] [--split-mib 11]

Only images the shipped split files (``cytofm.data.provenance.split_files``) put in the ``pretrain`` part are taken:
the evaluation parts never reach a pretraining run. ``POOL/<dataset>/<relpath>`` keeps each image's path
relative to its data set, so a pool is checked against the split by name. ``--quality D=Q`` re-encodes data
set D as JPEG quality Q (to fit a pool into a transfer limit; images with a side <= 64 px become PNG, where
JPEG blocks would be a large part of the cell); without it the source bytes are copied. ``--record`` writes
the pretraining record (SHA-256 and perceptual hash of every ORIGINAL image, as an evaluation sees it).
``--split-mib N`` then moves the pool into ``POOL/part-1/<dataset>/...``, ``part-2``, ... of at most N MiB
each (files at the pool's top, such as a record written there, go with part 1): a GPU call carries the
working tree in at most 64 MiB, so a pool that does not fit beside the repository travels one part per
call (scripts/gpu_shipped_encoder.sh merges them there and exports with the record it finds).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from cytofm.data.provenance.hashing import hash_image
from cytofm.data.provenance.pretraining_record import write_record
from cytofm.data.provenance.split_files import DATASETS, part_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shared", type=Path, help="folder holding bccd/, herlev/, chula_rbc12/, cric/")
    ap.add_argument("out", type=Path)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--quality", action="append", default=[], metavar="DATASET=Q")
    ap.add_argument("--limit", type=int, default=0, help="first N images of each set (a quick test pool)")
    ap.add_argument("--record", type=Path)
    ap.add_argument("--split-mib", type=float, help="then split the pool into parts of at most this size")
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
    if a.split_mib:
        split_parts(a.out, a.split_mib * 2**20, a.datasets.split(","))


def split_parts(out: Path, limit: float, datasets: list[str]) -> None:
    """Move ``out/<dataset>/...`` into ``out/part-<k>/<dataset>/...``, in file order, each part at most
    ``limit`` bytes."""
    files = [p for ds in datasets for p in sorted((out / ds).rglob("*")) if p.is_file()]
    k, size = 1, 0
    for p in files:
        n = p.stat().st_size
        if n > limit:
            raise SystemExit(f"{p}: {n / 2**20:.1f} MiB, larger than a part")
        if size + n > limit:
            k, size = k + 1, 0
        dst = out / f"part-{k}" / p.relative_to(out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        p.rename(dst)
        size += n
    for ds in datasets:
        shutil.rmtree(out / ds, ignore_errors=True)
    for f in [f for f in out.iterdir() if f.is_file()]:  # the record, if written into the pool
        f.rename(out / "part-1" / f.name)
    for i in range(1, k + 1):  # each part names itself, so a pool merged from parts can be checked whole
        (out / f"part-{i}" / ".parts").mkdir(exist_ok=True)
        (out / f"part-{i}" / ".parts" / f"{i}-of-{k}").touch()
    print(f"{len(files)} files in {k} part(s) of at most {limit / 2**20:.1f} MiB: {out}/part-1 ... part-{k}")


if __name__ == "__main__":
    main()
