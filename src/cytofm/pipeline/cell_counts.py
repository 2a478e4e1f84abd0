"""A model that classifies cells (a probe trained with ``--cell-points``) applied to new fields and slides:
every detected cell gets a class, and each field or slide its counts by class, which is how a film or a
smear is reported (a differential count, the share of abnormal red cells). The cells export to QuPath
with their class, so the counts can be checked cell by cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytofm.eval.saved_model import SavedModel
from cytofm.features.derived import CELL_UNIT
from cytofm.features.store import STORE_FILE, read_item


def holds_single_cells(store: Path) -> bool:
    """Whether a store's items are single cells (from ``--cell-points``), not fields holding cells."""
    import json

    try:
        return json.loads((store / STORE_FILE).read_text()).get("unit") == CELL_UNIT
    except (OSError, ValueError):
        return False


def cell_rows(store: Path, rows: list[dict]) -> list[dict]:
    """One row per cell: the cell's features and centre, and the field (or slide) it belongs to. A store of
    fields holds a field's cells as its instances; a store of single cells (from ``--cell-points``) one
    cell per item, its field in the ``field`` column and its label in the item's."""
    single = holds_single_cells(store)
    out = []
    for k, r in enumerate(rows):
        f, coords, attrs = read_item(r["h5"])
        half = float(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0) / 2
        for j in range(len(f)):
            out.append({"item": k, "field": str(r.get("field") or r["id"]) if single else r["id"],
                        "id": r["id"] if single else f"{r['id']}_c{j}",
                        "x": round(float(coords[j, 0]) + half, 1), "y": round(float(coords[j, 1]) + half, 1),
                        "features": f[j]})
    return out


def classify_cells(model: SavedModel, files: list[Path], cells: list[dict]) -> np.ndarray:
    """Each member's class probabilities of every cell (M, cells, C)."""
    from cytofm.eval.saved_probe import members_proba

    x = np.stack([c["features"] for c in cells]).astype(np.float32)
    return members_proba(model.method, files, x, len(model.classes))


def count_rows(table: list[dict], classes: list[str], empty: list[str] = ()) -> list[dict]:
    """Per field or slide: its cells, their count and share by predicted class, and whether the field is
    flagged as seen (any of its cells is: they share the field's source). ``empty``: fields in which no
    cell was found, counted as zero (a share of nothing is left blank)."""
    fields: dict[str, list[dict]] = {}
    for r in table:
        fields.setdefault(r["field"], []).append(r)
    for name in empty:
        fields.setdefault(name, [])
    out = []
    for name, cells in fields.items():
        n = {c: sum(1 for r in cells if r["pred"] == c) for c in classes}
        out.append({"field": name, "n_cells": len(cells), **{f"n_{c}": n[c] for c in classes},
                    **{f"share_{c}": round(n[c] / len(cells), 4) if cells else "" for c in classes},
                    "excluded": any(r["excluded"] for r in cells)})
    return out


def empty_fields(prepared: Path | None, rows: list[dict]) -> list[str]:
    """The prepared fields and slides in which no cell was found (extraction skipped them)."""
    from cytofm.data.prepare.prepared import load_prepared

    if prepared is None:
        return []
    have = {r["id"] for r in rows}
    return [it.id for it in load_prepared(prepared) if it.meta.get("n_cells") == "0" and it.id not in have]


def count_lines(counts: list[dict], classes: list[str], limit: int = 10) -> list[str]:
    """The summary's lines: cells by predicted class over all fields, then per field (the first
    ``limit``; ``cell_counts.csv`` has them all)."""
    total = sum(r["n_cells"] for r in counts)

    def by_class(r: dict) -> str:
        return ", ".join(f"{c} {r[f'n_{c}']}" for c in classes)

    overall = {f"n_{c}": sum(r[f"n_{c}"] for r in counts) for c in classes}
    lines = [f"{total} cell(s) in {len(counts)} field(s)/slide(s) classified: {by_class(overall)}"]
    lines += [f"{r['field']}: {r['n_cells']} cells, {by_class(r)}" + (" (seen)" if r["excluded"] else "")
              for r in counts[:limit]]
    if len(counts) > limit:
        lines.append(f"... {len(counts) - limit} more in cell_counts.csv")
    return lines


def write_cell_geojson(folder: Path, prepared: Path | None, rows: list[dict], table: list[dict],
                       classes: list[str]) -> int:
    """``<field>.geojson`` per field of a store of fields: its detected cells as QuPath cells (outline and
    nucleus from ``prepared/cells``) classified by the model, with every class's probability among the
    measurements. Fields whose cells are not found (or changed since) are left out; returns how many
    were written."""
    from cytofm.data.annotations.geojson import class_color, write_feature_collection
    from cytofm.data.cells.store import read_cells

    if prepared is None:
        return 0
    by_field: dict[str, list[dict]] = {}
    for r in table:
        by_field.setdefault(r["field"], []).append(r)
    written = 0
    for r in rows:
        h5 = prepared / "cells" / f"{r['id']}.h5"
        mine = by_field.get(r["id"], [])
        if not h5.is_file() or not mine:
            continue
        cells = read_cells(h5)
        if len(cells) != len(mine):
            continue
        feats = _classified(cells, mine, classes, class_color)
        write_feature_collection(folder / f"{r['id']}.geojson", feats)
        written += 1
    return written


def _classified(cells, mine: list[dict], classes: list[str], class_color) -> list[dict]:
    """The cells' QuPath objects with the predicted class and the probabilities added."""
    import shapely

    from cytofm.data.annotations.geojson import cell_feature
    from cytofm.data.cells.table import MEASUREMENTS

    out = []
    for k, t in enumerate(mine):
        if len(cells.contour[k]) < 3:
            continue
        nucleus = shapely.Polygon(cells.nucleus[k]) if len(cells.nucleus[k]) >= 3 else None
        values = {m: float(cells.measures[m][k]) for m in MEASUREMENTS}
        values.update({f"p_{c}": float(t[f"p_{c}"]) for c in classes})
        out.append(cell_feature(shapely.Polygon(cells.contour[k]), nucleus,
                                (t["pred"], class_color(t["pred"])), values))
    return out

