"""CLAM's layout (mahmoodlab/CLAM, ``extract_features_fp.py`` and ``dataset_modules``).

``h5_files/<slide_id>.h5`` with ``features`` and ``coords``; ``pt_files/<slide_id>.pt``, the features as one
float tensor (what CLAM trains on); a dataset CSV with ``case_id``, ``slide_id``, ``label``. CLAM reads a
patch as ``wsi.read_region(coord, patch_level, (patch_size, patch_size))``, so ``patch_size`` here is the
side *at patch_level* (level 0: ``patch_size_level0``) and ``custom_downsample`` the factor down to the
pixels the encoder saw (``target_patch_size``). TRIDENT's magnification attributes ride along.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

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

CSV_NAME = "dataset.csv"


def write(slides: list[Slide], out: Path, mpp: float | None = None) -> Path:
    """CLAM's folders and dataset CSV; returns ``out`` (CLAM records patch sizes, not ``mpp``)."""
    rows = []
    for s in slides:
        g = s.geometry
        clam = {"patch_size": g["patch_size_level0"], "patch_level": 0,
                "custom_downsample": g["custom_downsample"],
                "target_patch_size": g["patch_size"], "downsample": [1.0, 1.0], "name": s.id,
                **{k: g[k] for k in ("patch_size_level0", "level0_magnification", "target_magnification",
                                     "overlap")}}
        write_h5(out / "h5_files" / f"{s.id}.h5",
                 {"features": s.features.astype(np.float32), "coords": s.coords.astype(np.int64)},
                 extra_attrs(s), {"coords": clam})
        pt = out / "pt_files" / f"{s.id}.pt"
        pt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.from_numpy(np.ascontiguousarray(s.features, dtype=np.float32)), pt)  # a plain tensor
        rows.append({"case_id": patient_of(s), "slide_id": s.id, "label": s.meta.get("label", ""),
                     **{k: v for k, v in s.meta.items() if k not in ("case_id", "slide_id", "label")}})
    write_csv(out / CSV_NAME, rows)
    return out


def _table(root: Path, table: Path | None) -> dict[str, dict]:
    """slide_id -> row of the dataset CSV (given, or the one CSV in the folder with a slide_id column)."""
    cands = [table] if table else sorted(root.glob("*.csv"))
    for c in cands:
        try:
            rows = read_csv(c)
        except OSError as e:
            raise InputError(f"{c}: cannot read ({e})") from None
        if rows and "slide_id" in rows[0]:
            return {Path(r["slide_id"]).stem if Path(r["slide_id"]).suffix else r["slide_id"]: r
                    for r in rows}
        if table:
            raise InputError(f"{c}: no slide_id column (CLAM's dataset CSV has case_id, slide_id, label)")
    return {}


def _geometry(c: dict, mpp: float | None, coords: np.ndarray, h5: Path) -> dict:
    level = int(c.get("patch_level", 0))
    if "patch_size_level0" in c:
        size0 = int(c["patch_size_level0"])
    elif "patch_size" in c:
        ds = c.get("downsample", [1.0, 1.0])
        if level and ds is None:
            raise InputError(f"{h5}: patch_level {level} without a 'downsample' attribute: "
                             "level-0 size unknown")
        size0 = int(round(float(c["patch_size"]) * float(np.ravel(ds)[0])))
    else:
        raise InputError(f"{h5}: coords has no patch_size attribute (not a CLAM patch file)")
    if "target_patch_size" in c and int(c["target_patch_size"]) > 0:
        size = int(c["target_patch_size"])
    else:
        size = int(round(size0 / float(c.get("custom_downsample", 1) or 1)))
    return geometry(mpp, size0, size, coords)


def read(root: Path, mpp: float | None = None, table: Path | None = None) -> list[Slide]:
    h5_dir, pt_dir = root / "h5_files", root / "pt_files"
    if not h5_dir.is_dir() and not pt_dir.is_dir():
        raise InputError(f"{root}: not a CLAM feature folder (no h5_files/ or pt_files/)")
    rows = _table(root, table)
    slides = []
    if h5_dir.is_dir():
        for h5 in sorted(h5_dir.glob("*.h5")):
            try:
                with h5py.File(h5, "r") as f:
                    feats, coords = f["features"][:], f["coords"][:]
                    attrs, c = plain_attrs(f.attrs), plain_attrs(f["coords"].attrs)
            except (OSError, KeyError) as e:
                raise InputError(f"{h5}: not a CLAM feature file ({e})") from None
            level0_mpp = resolve_mpp(attrs, mpp, c.get("level0_magnification"))
            if level0_mpp is not None:
                attrs["mpp"] = level0_mpp
            geo = _geometry(c, level0_mpp, coords, h5)
            if "overlap" in c:
                geo["overlap"] = int(c["overlap"])
            slides.append(Slide(h5.stem, feats.astype(np.float32), coords.astype(np.int64), geo, attrs,
                                meta_from(attrs)))
    else:  # features only: CLAM trains on these; positions are unknown
        from cytofm.models.loading import torch_load

        for pt in sorted(pt_dir.glob("*.pt")):
            try:
                t = torch_load(pt)  # restricted unpickler: a plain tensor needs nothing else
            except ValueError as e:  # refused pickle (names --trust-weights) or unreadable file
                raise InputError(str(e)) from None
            if not isinstance(t, torch.Tensor) or t.ndim != 2:
                raise InputError(f"{pt}: holds a {type(t).__name__}, not an (N, D) feature tensor")
            n = len(t)
            slides.append(Slide(pt.stem, t.float().numpy(), np.zeros((n, 2), np.int64),
                                geometry(mpp, 0, 0, np.zeros((0, 2))), {"coords_known": False}, {}))
    for s in slides:
        merge_table_row(s, rows.get(s.id), skip=("slide_id",))
    return slides


FORMAT = FeatureFormat(read, write)
