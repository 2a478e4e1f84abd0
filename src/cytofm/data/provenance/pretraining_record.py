"""What an encoder was pretrained on: one row per image (dataset, relpath, sha256, phash), gzipped CSV.

An exported encoder's JSON names the file (``"pretraining_record"``, beside the weights), so an evaluation
can find items the encoder has already seen (transductive results) without access to the pretraining data.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable
from pathlib import Path

from cytofm.utils.io import strict_json

COLUMNS = ("dataset", "relpath", "sha256", "phash")


def write_record(rows: Iterable[dict], path: str | os.PathLike) -> Path:
    """Rows sorted by (dataset, relpath); gzip with mtime 0 so the same images give the same bytes."""
    rows = sorted(({k: str(r[k]) for k in COLUMNS} for r in rows), key=lambda r: (r["dataset"], r["relpath"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    p = Path(path)
    with open(p, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(buf.getvalue().encode())
    return p


def read_record(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise ValueError(f"{p}: a pretraining record needs the columns {', '.join(COLUMNS)}")
    return rows


def attach_record(export_json: str | os.PathLike, record: str | os.PathLike) -> dict:
    """Put ``record`` beside an export as ``<stem>.pretraining.csv.gz`` and name it in the export's JSON with
    a summary: images per data set and, where a data set has a split shipped with cytofm, that split file
    and its SHA-256 (so a reader knows which part was used without the project at hand)."""
    import hashlib
    import json
    import shutil

    from cytofm.data.provenance.split_files import DATASETS, split_file

    js = Path(export_json)
    rows = read_record(record)
    if not rows:
        raise ValueError(f"{record}: the pretraining record is empty")
    dest = js.with_name(js.stem + ".pretraining.csv.gz")
    if Path(record).resolve() != dest.resolve():
        if Path(record).suffix == ".gz":
            shutil.copyfile(record, dest)
        else:
            write_record(rows, dest)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
    splits = {d: {"file": f"cytofm/data/splits/{d}.csv", "part": "pretrain",
                  "sha256": hashlib.sha256(split_file(d).read_bytes()).hexdigest()}
              for d in counts if d in DATASETS}
    meta = json.loads(js.read_text())
    meta["pretraining_record"] = dest.name
    meta["pretraining_data"] = {"images": len(rows), "datasets": dict(sorted(counts.items())),
                                "splits": splits}
    js.write_text(strict_json(meta))
    return meta
