"""Where a MIL model looked, as ``cytofm predict`` writes it: ``attention.h5`` (each item's attention over
its instances), ``geojson/<id>.geojson`` for review in QuPath, and heatmaps over a few items' sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytofm.features.store import item_attrs, read_item


def write_attention(path: Path, rows: list[dict], attention: list[np.ndarray]) -> None:
    """Each item's attention over its instances (the members' mean), with their coordinates."""
    import h5py

    from cytofm.utils.io import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for r, a in zip(rows, attention, strict=True):
            g = f.create_group(r["id"])
            g.create_dataset("attention", data=np.asarray(a, np.float32))
            g.create_dataset("coords", data=read_item(r["h5"])[1])


def _patch_size(row: dict) -> int:
    attrs = item_attrs(row["h5"]) or {}
    return int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0)


def previews(rows: list[dict], attention: list[np.ndarray], folder: Path, limit: int, log,
             table: list[dict] | None = None) -> None:
    """Attention over the sources of ``limit`` items spread over the input (the GeoJSON has every item):
    each image beside its overlay, with a colour bar and the item's prediction (``table``, the rows of
    predictions.csv) as the caption."""
    from cytofm.viz.heatmaps import prediction_heatmap_png

    picks = sorted(set(np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int).tolist()))
    for k in picks:
        r = rows[k]
        size0 = _patch_size(r)
        if r.get("path"):
            prediction_heatmap_png(r["path"], read_item(r["h5"])[1], size0, attention[k],
                                   folder / f"{r['id']}_attention.png",
                                   caption(r["id"], table[k] if table else None), log=log)


def caption(item: str, row: dict | None) -> str:
    """``<id>: predicted <class> (p = 0.930)``, and the label when the input gave one."""
    if not row:
        return f"{item}: attention of the model"
    p = row.get(f"p_{row['pred']}")
    prob = f" (p = {float(p):.3f})" if p not in (None, "") else ""
    return f"{item}: predicted {row['pred']}{prob}" + (f"; label {row['label']}" if row.get("label") else "")


def write_geojson(folder: Path, rows: list[dict], attention: list[np.ndarray], table: list[dict],
                  classes: tuple[str, ...]) -> None:
    """``<id>.geojson`` per item for review in QuPath: each instance a tile with its attention, and the
    item's prediction as an annotation with every class's probability."""
    from cytofm.viz.heatmaps import attention_geojson

    for r, a, t in zip(rows, attention, table, strict=True):
        coords = read_item(r["h5"])[1]
        size0 = _patch_size(r)
        if size0 and len(coords):
            attention_geojson(coords, size0, a, folder / f"{r['id']}.geojson",
                              prediction=(t["pred"], {c: t[f"p_{c}"] for c in classes}))
