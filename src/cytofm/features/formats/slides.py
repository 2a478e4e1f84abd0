"""A cytofm feature store as plain per-slide records, the common ground of every converter."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cytofm.features.formats.geometry import COORDS_ATTRS, geometry
from cytofm.features.store import load_store, write_item
from cytofm.utils.errors import InputError
from cytofm.utils.io import write_csv

STORE_COLUMNS = ("id", "path", "h5", "n_instances")
META_ATTR = "cytofm_manifest"  # the item's manifest row (labels, patient...), JSON, in exported files


@dataclass
class Slide:
    """One item: features (N, D), level-0 pixel coords (N, 2), geometry, cytofm attributes, metadata."""

    id: str
    features: np.ndarray
    coords: np.ndarray
    geometry: dict
    attrs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def mpp(self) -> float | None:
        v = self.attrs.get("mpp")
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) and v > 0 else None


def _plain(v):
    """h5 attribute values as plain Python (numpy scalars and bytes do not survive JSON or CSV)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def plain_attrs(attrs) -> dict:
    return {k: _plain(v) for k, v in dict(attrs).items()}


def read_store(root: str | os.PathLike) -> list[Slide]:
    """Every item of a cytofm store (``manifest.csv`` + ``features/<id>.h5``)."""
    try:
        rows = load_store(root)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    slides = []
    for r in rows:
        try:
            with h5py.File(r["h5"], "r") as f:
                feats, coords = f["features"][:], f["coords"][:]
                attrs, cattrs = plain_attrs(f.attrs), plain_attrs(f["coords"].attrs)
        except (OSError, KeyError) as e:
            raise InputError(f"{r['h5']}: not a readable cytofm feature file ({e})") from None
        if "level0_magnification" in cattrs:
            geo = {k: cattrs[k] for k in COORDS_ATTRS if k in cattrs}
        else:  # stores written before the full geometry was recorded
            size0 = int(cattrs.get("patch_size_level0") or 0)
            geo = geometry(attrs.get("mpp"), size0, int(cattrs.get("patch_size") or size0), coords)
        meta = {k: v for k, v in r.items() if k not in STORE_COLUMNS}
        attrs.setdefault("source_path", r.get("path", ""))
        slides.append(Slide(r["id"], feats.astype(np.float32), coords.astype(np.int64), geo, attrs, meta))
    return slides


def write_store(slides: list[Slide], out: str | os.PathLike) -> Path:
    """A cytofm store of these records; refuses to overwrite a folder that already holds one."""
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise InputError(f"{out}: already holds a feature store (manifest.csv); choose a new --out folder")
    rows = []
    for s in slides:
        attrs = {k: v for k, v in s.attrs.items() if k not in COORDS_ATTRS and k != META_ATTR}
        write_item(out / "features" / f"{s.id}.h5", s.features, s.coords, {**attrs, **s.geometry})
        rows.append({"id": s.id, "path": s.attrs.get("source_path", ""), "h5": f"features/{s.id}.h5",
                     "n_instances": len(s.coords), **s.meta})
    write_csv(out / "manifest.csv", rows)
    return out / "manifest.csv"


PATIENT_KEYS = ("specimen", "case_id", "PATIENT", "patient", "patient_id", "specimen_id", "case", "subject")
"""Where a slide's patient or specimen can be: cytofm's ``specimen`` (from any of these columns at prepare),
then the names CLAM, STAMP and labs use."""


def patient_of(s: Slide, keys: tuple[str, ...] = PATIENT_KEYS) -> str:
    """The first of ``keys`` the slide's metadata fills (each tool names the patient column its own way),
    else the slide id: one slide, one patient."""
    for k in keys:
        if s.meta.get(k):
            return str(s.meta[k])
    return s.id


def meta_json(s: Slide) -> str:
    return json.dumps(s.meta)


def meta_from(attrs: dict) -> dict:
    raw = attrs.get(META_ATTR)
    try:
        return dict(json.loads(raw)) if raw else {}
    except (TypeError, ValueError):
        return {}


def merge_table_row(s: Slide, row: dict | None, skip: tuple = ()) -> None:
    """Metadata from a tool's table: all of it for a foreign file; for one cytofm wrote (which carries its
    manifest row), only the columns the row already had, so edits to the table win and nothing is invented."""
    if not row:
        return
    row = {k: v for k, v in row.items() if k not in skip}
    if META_ATTR in s.attrs:
        s.meta.update({k: v for k, v in row.items() if k in s.meta})
    else:
        s.meta.update(row)


def extra_attrs(s: Slide) -> dict:
    """cytofm attributes carried along in an exported file (other tools ignore attributes they do not
    know)."""
    return {**{k: v for k, v in s.attrs.items() if k not in COORDS_ATTRS}, META_ATTR: meta_json(s)}


def write_h5(path: Path, datasets: dict, attrs: dict, dataset_attrs: dict | None = None) -> None:
    """An h5 file written under a temporary name and renamed, so a crash never leaves half a file."""
    from cytofm.utils.io import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, data in datasets.items():
                f.create_dataset(name, data=data)
            for k, v in attrs.items():
                f.attrs[k] = "" if v is None else v
            for name, a in (dataset_attrs or {}).items():
                for k, v in a.items():
                    f[name].attrs[k] = "" if v is None else v


def resolve_mpp(s_attrs: dict, mpp: float | None, mag0=None) -> float | None:
    """Level-0 resolution: the --mpp given, else the file's own ``mpp``, else 10 / level-0 magnification."""
    if mpp:
        return float(mpp)
    try:
        v = float(s_attrs.get("mpp"))
        if math.isfinite(v) and v > 0:
            return v
    except (TypeError, ValueError):
        pass
    try:
        m = float(mag0)
        return 10.0 / m if math.isfinite(m) and m > 0 else None
    except (TypeError, ValueError):
        return None
