"""Cells cut around annotated points: a point table ``image,x,y,label`` becomes fixed-size crops centred on
the points and a manifest of them (absolute paths) that the rest of the benchmark reads like any other
input. Written here rather than taken from a library because the inputs are the point tables of cytology
sets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from cytofm.utils.io import write_csv

SOURCE_COLUMN = "source_image"
"""The field a cell crop was cut from: the pretraining guard checks that image, since an encoder pretrained on
the field has seen the cell although the crop's own bytes were never in its pool."""


def point_crops(points: Path, label: str, size: int, out_dir: Path, split: dict[str, str] | None = None,
                part: str | None = None, exclude: tuple[str, ...] = ()) -> tuple[Path, int]:
    """One ``size`` x ``size`` crop centred on each annotated point (``image,x,y,<label>``), padded with the
    image's edge pixels where the point is near the border; ``field`` (the source image) is the column
    to group splits by, since cells of one field are not independent. Crops already written are reused."""
    with open(points, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"image", "x", "y", label} <= set(rows[0]):
        raise ValueError(f"{points}: a point table needs the columns image, x, y, {label}")
    rows = [r for r in rows if r[label] not in exclude]
    if split is not None:
        missing = sorted({r["image"] for r in rows} - set(split))
        if missing:
            raise ValueError(f"{points}: image {missing[0]} is not in the split file")
        rows = [r for r in rows if split[r["image"]] == part]
    out_dir.mkdir(parents=True, exist_ok=True)
    half, by_image, manifest = size // 2, {}, []
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    for image, cells in sorted(by_image.items()):
        src = points.parent / image
        stem = Path(image).with_suffix("").as_posix().replace("/", "__")
        # named by the point, not its row number: a crop on disk is the crop of that point whatever the
        # table's other rows (a changed `exclude` must not pair old crops with new labels)
        names = [f"{stem}__x{float(c['x']):g}_y{float(c['y']):g}.png" for c in cells]
        todo = [(n, c) for n, c in zip(names, cells, strict=True) if not (out_dir / n).is_file()]
        if todo:
            try:
                with Image.open(src) as im:
                    arr = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise ValueError(f"{src}: cannot read the image of {len(cells)} annotated point(s) "
                                 f"({e})") from None
            # edge pixels repeated into the margin (a black frame would be a feature of border cells)
            padded = np.pad(arr, ((half, size - half), (half, size - half), (0, 0)), mode="edge")
            for n, c in todo:
                x, y = round(float(c["x"])), round(float(c["y"]))
                x, y = min(max(x, 0), arr.shape[1] - 1), min(max(y, 0), arr.shape[0] - 1)
                Image.fromarray(padded[y:y + size, x:x + size]).save(out_dir / n)
        for n, c in zip(names, cells, strict=True):
            manifest.append({"path": str((out_dir / n).resolve()), label: c[label], "field": image,
                             "x": c["x"], "y": c["y"], SOURCE_COLUMN: str(src.resolve())})
    out = out_dir / "manifest.csv"
    write_csv(out, manifest, ["path", label, "field", "x", "y", SOURCE_COLUMN])
    return out, len(manifest)
