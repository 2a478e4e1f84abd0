"""Stores made from stores, so that every benchmark can set feature sets side by side without extracting
again: two encoders' features of the same instances concatenated (``cytofm+morphometrics``), and the cells
of fields made items of their own (cell-level tasks on detected cells)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from cytofm.features.store import (
    STORE_FILE,
    claim_store,
    extract_settings,
    item_attrs,
    load_store,
    read_item,
    write_item,
)
from cytofm.utils.io import write_csv


class DerivedStoreError(ValueError):
    """Stores that cannot be combined (other items or instances)."""


def _identity(store: Path) -> dict:
    import json

    return json.loads((store / STORE_FILE).read_text())


def combine_stores(a: Path, b: Path, out: Path) -> Path:
    """Features of ``a`` and ``b`` side by side per instance (the same items, instances and order, e.g.
    an encoder's and the morphometrics of the same cells). Items already written are kept."""
    ia, ib = _identity(a), _identity(b)
    name = f"{ia['encoder']}+{ib['encoder']}"
    identity = {"encoder": name, "weights_hash": hashlib.sha256(
        f"{ia['weights_hash']}|{ib['weights_hash']}".encode()).hexdigest()[:16],
                "embed_dim": int(ia["embed_dim"]) + int(ib["embed_dim"]), "input_size": ia["input_size"],
                "mode": ia["mode"], "tta": ia.get("tta", False)}
    claim_store(out, identity, {"encoder_spec": name, "parts": [ia.get("encoder_spec", ""),
                                                                 ib.get("encoder_spec", "")]})
    rows_b = {r["id"]: r for r in load_store(b)}
    rows = []
    (out / "features").mkdir(parents=True, exist_ok=True)
    for r in load_store(a):
        if r["id"] not in rows_b:
            continue
        dst = out / "features" / f"{r['id']}.h5"
        if not dst.is_file():
            fa, ca, attrs = read_item(r["h5"])
            fb, cb, _ = read_item(rows_b[r["id"]]["h5"])
            if len(fa) != len(fb) or not np.array_equal(ca, cb):
                raise DerivedStoreError(f"{r['id']}: {a} and {b} hold other instances ({len(fa)} and "
                                        f"{len(fb)}); extract both from the same prepared folder")
            write_item(dst, np.concatenate([fa, fb], 1), ca, {**attrs, **identity, "encoder_spec": name})
        rows.append({k: v for k, v in r.items() if k != "h5"} | {"h5": f"features/{r['id']}.h5"})
    write_csv(out / "manifest.csv", rows)
    return out


def _points(table: Path, label: str) -> dict[str, list[tuple[float, float, str, str]]]:
    """``image -> [(x, y, label, image as the table gives it)]``, the key resolved against the table's
    folder (the image as given is what names an unmatched point to the user)."""
    out: dict[str, list] = {}
    with open(table, newline="") as f:
        for r in csv.DictReader(f):
            key = str((table.parent / r["image"]).resolve())
            out.setdefault(key, []).append((float(r["x"]), float(r["y"]), r[label], r["image"]))
    return out


def _unmatched(pts: list, pairs: list[tuple[int, int]], why: str) -> list[dict]:
    """The labelled points no cell took, each with its image, place and class: the hard cells a
    cell-level evaluation would otherwise leave out without a word."""
    taken = {j for _, j in pairs}
    return [{"image": p[3], "x": p[0], "y": p[1], "label": p[2], "why": why}
            for j, p in enumerate(pts) if j not in taken]


def _per_class(labelled: list[str], unmatched: list[dict]) -> dict[str, dict[str, int]]:
    lost: dict[str, int] = {}
    for u in unmatched:
        lost[u["label"]] = lost.get(u["label"], 0) + 1
    return {c: {"labelled": labelled.count(c), "matched": labelled.count(c) - lost.get(c, 0)}
            for c in sorted(set(labelled))}


def match_points(centres: np.ndarray, points: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """The most one-to-one pairs (cell, point) within ``tol`` px (equal cost beyond it, so no close pair is
    given up to shorten a far one)."""
    from scipy.optimize import linear_sum_assignment

    if not len(centres) or not len(points):
        return []
    d = np.hypot(*(centres[:, None, :] - points[None]).transpose(2, 0, 1))
    r, c = linear_sum_assignment(np.where(d <= tol, d / max(tol, 1e-9), 2.0))
    return [(int(i), int(j)) for i, j in zip(r, c, strict=True) if d[i, j] <= tol]


CELL_UNIT = "cell"
"""``store.json``'s ``unit`` for a store whose items are single cells: a model trained on it classifies
each cell, and ``cytofm predict`` applies it to every cell of a new field or slide and counts them."""


def _record_origin(store: Path, prepared: Path, out: Path) -> None:
    """The source store's extract settings with the prepared folder as its input, so that a model trained
    on the cells records how to prepare and embed new cases."""
    import yaml

    settings = {**extract_settings(store), "input": str(Path(prepared).resolve())}
    (out / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


def cells_as_items(store: Path, prepared: Path, points_table: Path, label: str, out: Path,
                   exclude: tuple[str, ...] = ()) -> dict:
    """Each detected cell matched to a labelled point (within half the median cell radius, one to one) as
    an item of its own: its instance's features, the point's label, its field as the group and as its
    source (``source_image``: the duplicate and pretraining checks read the field). Labelled points no
    detected cell matched are counted per class and listed (returned), never silently dropped."""
    from cytofm.data.annotations.point_crops import SOURCE_COLUMN
    from cytofm.data.cells.store import read_cells

    points = _points(points_table, label)
    fields = {r["id"]: r for r in load_store(store)}
    cells = {i: read_cells(prepared / "cells" / f"{i}.h5") for i in fields}
    mpp = {i: float((item_attrs(fields[i]["h5"]) or {}).get("mpp", np.nan)) for i in fields}
    radii = np.concatenate([np.sqrt(c.measures["area_um2"] / np.pi) / mpp[i] for i, c in cells.items()
                            if len(c)] or [np.zeros(0)])
    tol = 0.5 * float(np.median(radii)) if len(radii) else 0.0
    identity = _identity(store)
    claim_store(out, identity, {"encoder_spec": identity.get("encoder_spec", ""), "unit": CELL_UNIT})
    _record_origin(store, prepared, out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    rows, labels, unmatched, n_matched = [], [], [], 0
    for i, r in fields.items():
        src = str(Path(r["path"]).resolve())  # load_store joins it to the store's folder
        pts = [p for p in points.get(src, []) if p[2] not in exclude]
        labels += [p[2] for p in pts]
        if not pts:
            continue
        f, coords, attrs = read_item(r["h5"])
        pairs = match_points(cells[i].centre, np.array([p[:2] for p in pts]), tol)
        n_matched += len(pairs)
        unmatched += _unmatched(pts, pairs, f"no detected cell within {tol:.1f} px")
        for k, j in pairs:
            cid = f"{i}_c{k}"
            dst = out / "features" / f"{cid}.h5"
            if not dst.is_file():
                write_item(dst, f[k:k + 1], coords[k:k + 1], attrs)
            rows.append({"id": cid, "path": "", SOURCE_COLUMN: src, "h5": f"features/{cid}.h5",
                         "n_instances": 1, label: pts[j][2], "field": i})
    srcs = {str(Path(r["path"]).resolve()) for r in fields.values()}
    for key, pts in points.items():
        pts = [p for p in pts if p[2] not in exclude] if key not in srcs else []
        labels += [p[2] for p in pts]
        unmatched += _unmatched(pts, [], "image not in the store")
    write_csv(out / "manifest.csv", rows)
    return {"labelled": len(labels), "matched": n_matched, "tolerance_px": tol, "items": len(rows),
            "per_class": _per_class(labels, unmatched), "unmatched": unmatched}
