"""What ``cytofm triage`` hands the reviewer besides the worklist: per case the gallery of its most
abnormal cells, a gallery per class with an unidentified bin (for a blood film, the differential count), the
crops, the gallery cells as classified QuPath objects (each one found in the slide), and ``review.html``."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from cytofm.utils.io import write_csv

UNIDENTIFIED = "unidentified"
CELL_FIELDS = ("id", "x", "y", "z", "cls", "p", "abnormality", "focus", "seg_confidence")
"""What gallery.csv and the review page show of a cell."""


def galleries(agg, classes: list[str], top_k: int, per_class: int, below: float) -> dict[str, list[int]]:
    """Indices into a case's cells: ``top``, its ``top_k`` most abnormal; per class, the cells predicted
    as it with confidence at least ``below``, most confident first (``per_class`` of them); and
    ``unidentified``, the cells no class reaches ``below`` for, least confident first."""
    conf = agg.mean.max(1)
    out = {"top": [int(i) for i in agg.order[:top_k]]}
    sure = conf >= below
    for k, c in enumerate(classes):
        idx = np.flatnonzero(sure & (agg.pred == k))
        out[c] = [int(i) for i in idx[np.argsort(-conf[idx], kind="stable")][:per_class]]
    idx = np.flatnonzero(~sure)
    out[UNIDENTIFIED] = [int(i) for i in idx[np.argsort(conf[idx], kind="stable")][:per_class]]
    return out


def differential(agg, classes: list[str], below: float) -> dict:
    """A case's count by class of the cells classified with confidence, and its unidentified cells."""
    sure = agg.mean.max(1) >= below
    return {**{f"n_{c}": int((sure & (agg.pred == k)).sum()) for k, c in enumerate(classes)},
            f"n_{UNIDENTIFIED}": int((~sure).sum())}


def _outline_index(case, pred_cells: list[dict]) -> list[int | None]:
    """Each of the case's predicted cells' row in the detector's table (the same order when the counts
    agree, else the nearest centre within 3 px; None where none is)."""
    t = case.outlines
    if t is None:
        return [None] * len(case.cells)
    if len(t) == len(case.cells):
        return list(range(len(t)))
    out = []
    for k in case.cells:
        d = np.hypot(t.centre[:, 0] - pred_cells[k]["x"], t.centre[:, 1] - pred_cells[k]["y"])
        out.append(int(d.argmin()) if len(d) and d.min() <= 3 else None)
    return out


def cell_records(case, pred, classes: list[str]) -> list[dict]:
    """One record per cell of a case: its place (the detector's centre where known), plane, class and
    probability, abnormality, focus and segmentation confidence."""
    mean = case.agg.mean
    rows = []
    for j, (k, o) in enumerate(zip(case.cells, _outline_index(case, pred.cells), strict=True)):
        c, t = pred.cells[k], case.outlines
        x, y = (float(t.centre[o, 0]), float(t.centre[o, 1])) if o is not None else (c["x"], c["y"])
        z = int(t.plane[o]) if o is not None and t.plane is not None else 0
        m = _measure(t, o)
        cls = int(case.agg.pred[j])
        rows.append({"id": c["id"], "x": round(x, 1), "y": round(y, 1), "z": z, "cls": classes[cls],
                     "p": round(float(mean[j, cls]), 4),
                     "abnormality": round(float(case.agg.abnormality[j]), 4),
                     "focus": round(m("focus"), 4), "seg_confidence": round(m("seg_confidence"), 4),
                     "outline": o, "half": _half_box(t, o)})
    return rows


def _measure(t, o):
    """A cell's measurement by name (NaN where the detector's row is unknown)."""
    return (lambda name: float(t.measures[name][o])) if o is not None else (lambda name: float("nan"))


def _half_box(t, o) -> float:
    """Half the side of a cell's crop: its box's longer half-side with a quarter margin (8 px at least)."""
    if o is None:
        return 16.0
    x0, y0, x1, y1 = t.bbox[o]
    return max(8.0, 0.625 * float(max(x1 - x0, y1 - y0)))


def crops(image: str, kind_of, cells: list[dict], which: set[int], size: int) -> dict[int, str]:
    """Base64 JPEG crops (``size`` px) of the cells ``which``, read from the case's source at level 0
    around each cell (white past the image's edge)."""
    from PIL import Image

    if not which:
        return {}
    src = kind_of(image)
    out = {}
    try:
        for j in sorted(which):
            c = cells[j]
            h = int(round(c["half"]))
            rgb = src.read(int(round(c["x"])) - h, int(round(c["y"])) - h, 2 * h, size, z=c["z"] or None)
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "JPEG", quality=85)
            out[j] = base64.b64encode(buf.getvalue()).decode("ascii")
    finally:
        src.close()
    return out


def gallery_rows(case_id: str, cells: list[dict], gal: dict[str, list[int]]) -> list[dict]:
    """gallery.csv's rows of a case: each cell of each gallery with its place in it."""
    return [{"case": case_id, "gallery": g, "position": n + 1, **{k: cells[j][k] for k in CELL_FIELDS}}
            for g, idx in gal.items() for n, j in enumerate(idx)]


def gallery_geojson(path: Path, case, cells: list[dict], gal: dict[str, list[int]]) -> bool:
    """The case's gallery cells as classified QuPath cells (outline and nucleus from the detector), each
    with its class, probability, abnormality and place in the gallery among the measurements."""
    import shapely

    from cytofm.data.annotations.geojson import cell_feature, class_color, write_feature_collection

    t = case.outlines
    feats, done = [], set()
    for idx in gal.values():
        for j in idx:
            o = cells[j]["outline"]
            if o is None or j in done or len(t.contour[o]) < 3:
                continue
            done.add(j)
            nucleus = shapely.Polygon(t.nucleus[o]) if len(t.nucleus[o]) >= 3 else None
            values = {"p": cells[j]["p"], "abnormality": cells[j]["abnormality"],
                      "top_gallery_position": (gal["top"].index(j) + 1) if j in gal["top"] else 0}
            feats.append(cell_feature(shapely.Polygon(t.contour[o]), nucleus,
                                      (cells[j]["cls"], class_color(cells[j]["cls"])), values))
    if feats:
        write_feature_collection(path, feats)
    return bool(feats)


def write_outputs(out: Path, cases: list, pred, worklist: list[dict], classes: list[str], abnormal: list[int],
                  cfg) -> None:
    """gallery.csv, differential.csv, geojson/<case>.gallery.geojson and review.html."""
    from cytofm.data.sources.source import open_source
    from cytofm.eval.adequacy import ESTIMATE_NOTE
    from cytofm.viz.review_page import write_review_page

    kinds = {r["id"]: (r.get("kind") or "image") for r in pred.rows}
    page, rows, diff = {}, [], []
    for case in cases:
        if case.agg is None:
            page[case.id] = {"image": case.image, "cells": [], "galleries": {}}
            continue
        cells = cell_records(case, pred, classes)
        gal = galleries(case.agg, classes, cfg.top_k, cfg.class_gallery, cfg.unidentified_below)
        shown = {j for idx in gal.values() for j in idx}
        images = crops(case.image, lambda p, k=kinds.get(case.id, "image"): open_source(p, k), cells, shown,
                       cfg.crop_px)
        slot = {j: n for n, j in enumerate(sorted(shown))}  # a cell's index among those the page carries
        page[case.id] = {"image": case.image,
                         "galleries": {g: [slot[j] for j in idx] for g, idx in gal.items()},
                         "cells": [{**{k: cells[j][k] for k in CELL_FIELDS}, "crop": images[j]}
                                   for j in sorted(shown)]}
        rows += gallery_rows(case.id, cells, gal)
        diff.append({"case": case.id, **differential(case.agg, classes, cfg.unidentified_below)})
        if case.outlines is not None:
            gallery_geojson(out / "geojson" / f"{case.id}.gallery.geojson", case, cells, gal)
    write_csv(out / "gallery.csv", rows)
    write_csv(out / "differential.csv", diff)
    write_review_page(out / "review.html", worklist, page, classes, title=f"cytofm triage: {out.name}",
                      notes=[ESTIMATE_NOTE,
                             f"Abnormal classes: {', '.join(classes[k] for k in abnormal)}; "
                             f"case score: {cfg.score}."])

