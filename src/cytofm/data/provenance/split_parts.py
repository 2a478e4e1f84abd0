"""One part of a fixed split as a plain manifest: the rows of a data set's manifest whose image the split puts
in that part (pretraining or evaluation), paths made absolute so it works from any folder. Written here
rather than taken from a library because the inputs are the project's own split files."""

from __future__ import annotations

import csv
from pathlib import Path

from cytofm.data.sources.inputs import PATH_COLUMNS
from cytofm.data.sources.inputs import path_column as find_path_column
from cytofm.utils.errors import InputError
from cytofm.utils.io import write_csv


def load_split_map(spec: str, base: Path) -> dict[str, str]:
    """``{relative image path: part}`` from ``cytofm:<dataset>`` (a shipped split) or a CSV ``image,part``."""
    from cytofm.data.provenance.split_files import load_split

    if spec.startswith("cytofm:"):
        return load_split(spec.split(":", 1)[1])
    p = Path(spec) if Path(spec).is_absolute() else base / spec
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"image", "part"} <= set(rows[0]):
        raise InputError(f"{p}: a split file needs the columns image, part")
    return {r["image"]: r["part"] for r in rows}


def path_column(header: list[str], where: Path) -> str:
    col = find_path_column(header)
    if col is None:
        raise InputError(f"{where}: no image path column (one of {', '.join(PATH_COLUMNS)})")
    return col


def part_manifest(manifest: Path, split: dict[str, str], part: str, out: Path) -> tuple[Path, int]:
    """Rows of ``manifest`` whose image the split puts in ``part``, paths made absolute; images the split
    does not name are refused (a split that does not cover the data would silently shrink the task)."""
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    col = path_column(header, manifest)
    unknown = [r[col] for r in rows if r[col] not in split]
    if unknown:
        raise InputError(f"{manifest}: {len(unknown)} image(s) not in the split file (first: {unknown[0]})")
    keep = [dict(r, **{col: str((manifest.parent / r[col]).resolve())})
            for r in rows if split[r[col]] == part]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, keep, header)
    return out, len(keep)
