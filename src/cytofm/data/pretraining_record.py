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
