"""STAMP's layout (KatherLab/STAMP, ``stamp.preprocessing.extract_`` and ``stamp.modeling.data``).

``<extractor>/<slide>.h5`` with ``feats`` (N, D) and ``coords`` (N, 2) in micrometres (top-left x, y), and
the attributes STAMP writes and checks: ``extractor``, ``unit`` ("um"), ``tile_size_um``, ``tile_size_px``,
``feat_type`` ("tile"), ``stamp_version``, ``code_hash``. A slide table (``PATIENT``, ``FILENAME``, the
file name under the feature folder) and a clinical table (``PATIENT`` plus label columns) tie files to
patients. Micrometres need the level-0 resolution: items without one need ``--mpp``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import numpy as np

from cytofm import __version__
from cytofm.features.formats.geometry import geometry
from cytofm.features.formats.registry import FeatureFormat
from cytofm.features.formats.slides import (
    Slide,
    extra_attrs,
    merge_table_row,
    meta_from,
    patient_of,
    plain_attrs,
    resolve_mpp,
    write_h5,
)
from cytofm.utils.errors import InputError
from cytofm.utils.io import read_csv, write_csv

SLIDE_TABLE = "slide_table.csv"
CLINI_TABLE = "clini_table.csv"


def write(slides: list[Slide], out: Path, mpp: float | None = None) -> Path:
    encoder = str(slides[0].attrs.get("encoder", "cytofm")) if slides else "cytofm"
    d = out / (re.sub(r"[^\w.-]+", "_", f"cytofm-{encoder}").strip("_"))
    table, clini = [], {}
    for s in slides:
        m = mpp or s.mpp
        if m is None:
            raise InputError(f"{s.id}: resolution unknown, and STAMP stores coordinates in micrometres: "
                             "give --mpp (um per level-0 pixel), or prepare with --mpp / an 'mpp' column")
        g = s.geometry
        attrs = {**extra_attrs(s), "mpp": m, "stamp_version": f"cytofm {__version__}",
                 "extractor": str(s.attrs.get("encoder_spec", encoder)), "unit": "um",
                 "tile_size_um": float(g["patch_size_level0"]) * m, "tile_size_px": int(g["patch_size"]),
                 "code_hash": str(s.attrs.get("weights_hash", "")), "feat_type": "tile"}
        write_h5(d / f"{s.id}.h5", {"feats": s.features.astype(np.float32),
                                     "coords": s.coords.astype(np.float64) * m}, attrs)
        patient = patient_of(s)
        table.append({"PATIENT": patient, "FILENAME": f"{s.id}.h5"})
        clini.setdefault(patient, {"PATIENT": patient, **{k: v for k, v in s.meta.items() if k != "PATIENT"}})
    write_csv(d / SLIDE_TABLE, table, ["PATIENT", "FILENAME"])
    write_csv(d / CLINI_TABLE, list(clini.values()))
    return d


def _tables(folder: Path, slide_table: Path | None) -> dict[str, dict]:
    """FILENAME stem -> slide-table row merged with its patient's clinical row."""
    st = slide_table or (folder / SLIDE_TABLE if (folder / SLIDE_TABLE).is_file() else None)
    if st is None:
        return {}
    rows = read_csv(st)
    if rows and not {"PATIENT", "FILENAME"} <= set(rows[0]):
        raise InputError(f"{st}: a STAMP slide table needs PATIENT and FILENAME columns "
                         f"(has {', '.join(rows[0])})")
    clini_path = st.parent / CLINI_TABLE
    clini = {r["PATIENT"]: r for r in read_csv(clini_path)} if clini_path.is_file() else {}
    return {Path(r["FILENAME"]).stem: {**clini.get(r["PATIENT"], {}), "PATIENT": r["PATIENT"]} for r in rows}


def feature_folder(root: Path) -> Path:
    if any(root.glob("*.h5")):
        return root
    found = sorted({p.parent for p in root.rglob("*.h5")})
    if len(found) == 1:
        return found[0]
    raise InputError(f"{root}: {'no' if not found else 'several folders of'} STAMP feature files "
                     "(<slide>.h5 with feats)")


def read(root: Path, mpp: float | None = None, table: Path | None = None) -> list[Slide]:
    folder = feature_folder(root)
    rows = _tables(folder, table)
    slides = []
    for h5 in sorted(folder.glob("*.h5")):
        try:
            with h5py.File(h5, "r") as f:
                feats, coords_um, attrs = f["feats"][:], f["coords"][:], plain_attrs(f.attrs)
        except (OSError, KeyError) as e:
            raise InputError(f"{h5}: not a STAMP feature file ({e})") from None
        if attrs.get("feat_type", "tile") != "tile":
            raise InputError(f"{h5}: feat_type is '{attrs['feat_type']}'; "
                             "only tile features make a cytofm store")
        tile_um = attrs.get("tile_size_um", attrs.get("tile_size") if attrs.get("unit") == "um" else None)
        if not tile_um:
            raise InputError(f"{h5}: no tile_size_um attribute "
                             "(older STAMP files: re-extract with stamp preprocess)")
        tile_px = int(attrs.get("tile_size_px") or 0)
        level0 = resolve_mpp(attrs, mpp)
        if level0 is None:  # without the slide's own resolution, level 0 is taken to be the tile resolution
            level0 = float(tile_um) / tile_px if tile_px else None
        if level0 is None:
            raise InputError(f"{h5}: neither mpp nor tile_size_px: give --mpp")
        coords = np.rint(np.asarray(coords_um, np.float64) / level0).astype(np.int64)
        size0 = int(round(float(tile_um) / level0))
        attrs["mpp"] = level0
        attrs.setdefault("encoder", attrs.get("extractor", ""))
        s = Slide(h5.stem, feats.astype(np.float32), coords,
                  geometry(level0, size0, tile_px or size0, coords), attrs, meta_from(attrs))
        merge_table_row(s, rows.get(h5.stem))
        slides.append(s)
    if not slides:
        raise InputError(f"{folder}: no STAMP feature files")
    if any(not math.isfinite(s.geometry["level0_magnification"]) for s in slides):
        raise InputError(f"{folder}: resolution unknown: give --mpp")
    return slides


FORMAT = FeatureFormat(read, write)
