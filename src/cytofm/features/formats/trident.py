"""TRIDENT's patch-feature layout (mahmoodlab/TRIDENT, ``Processor.run_patch_feature_extraction_job``).

``<job>/features_<encoder>/<slide>.h5`` with ``features`` (N, D) and ``coords`` (N, 2, level-0 x, y); the
geometry on ``coords``' attributes as TRIDENT's patcher writes it (``patch_size`` at the target
magnification, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``,
``name``, ``savetodir``); ``features`` carries ``name``, ``savetodir`` and ``encoder``. TRIDENT's slide
encoders and heatmaps read the field of view from ``patch_size_level0``.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from cytofm.features.formats.geometry import geometry
from cytofm.features.formats.registry import FeatureFormat
from cytofm.features.formats.slides import (
    Slide,
    extra_attrs,
    meta_from,
    patient_of,
    plain_attrs,
    resolve_mpp,
    write_h5,
)
from cytofm.utils.errors import InputError
from cytofm.utils.io import write_csv

SLIDE_LIST = "wsi_list.csv"


def folder_name(encoder: str) -> str:
    return "features_" + (re.sub(r"[^\w.-]+", "_", encoder).strip("_") or "cytofm")


def write(slides: list[Slide], out: Path, mpp: float | None = None) -> Path:
    """Write ``OUT/features_<encoder>/<id>.h5``; returns that folder (magnifications are recorded, so no
    ``mpp`` is needed)."""
    encoder = str(slides[0].attrs.get("encoder", "cytofm")) if slides else "cytofm"
    d = out / folder_name(encoder)
    for s in slides:
        write_h5(d / f"{s.id}.h5",
                 {"features": s.features.astype(np.float32), "coords": s.coords.astype(np.int64)},
                 extra_attrs(s), {
                     "coords": {**s.geometry, "name": s.id, "savetodir": str(out)},
                     "features": {"name": s.id, "savetodir": str(d), "encoder": encoder}})
    # TRIDENT's slide list (--custom_list_of_wsis: wsi, mpp), with each slide's patient beside it
    write_csv(out / SLIDE_LIST, [{"wsi": Path(str(s.attrs.get("source_path") or s.id)).name,
                                  "mpp": _number_or_blank(s.attrs.get("mpp")), "slide_id": s.id,
                                  "specimen": patient_of(s),
                                  **{k: v for k, v in s.meta.items()
                                     if k not in ("wsi", "mpp", "slide_id", "specimen")}}
                                 for s in slides])
    return d


def _number_or_blank(v) -> str:
    try:
        return "" if v is None or not np.isfinite(float(v)) else str(float(v))
    except (TypeError, ValueError):
        return ""


def feature_folder(root: Path) -> Path:
    """``root`` itself when it holds the .h5 files, else its one ``features_*`` folder (searched below)."""
    if any(root.glob("*.h5")):
        return root
    found = sorted(p for p in root.rglob("features_*") if p.is_dir() and any(p.glob("*.h5")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{root}: no TRIDENT feature files (<slide>.h5 in a features_<encoder> folder)")
    raise InputError(f"{root}: several TRIDENT feature folders ({', '.join(str(p) for p in found)}); "
                     "pass one")


def read(root: Path, mpp: float | None = None, table: Path | None = None) -> list[Slide]:
    """The slides of a TRIDENT feature folder (TRIDENT keeps no slide table: ``table`` is not read)."""
    slides = []
    for h5 in sorted(feature_folder(root).glob("*.h5")):
        try:
            with h5py.File(h5, "r") as f:
                feats, coords = f["features"][:], f["coords"][:]
                attrs, c = plain_attrs(f.attrs), plain_attrs(f["coords"].attrs)
                encoder = plain_attrs(f["features"].attrs).get("encoder")
        except (OSError, KeyError) as e:
            raise InputError(f"{h5}: not a TRIDENT feature file ({e})") from None
        if "patch_size_level0" in c:
            size0 = int(c["patch_size_level0"])
        elif int(c.get("patch_level", 0)) == 0 and "patch_size" in c:
            size0 = int(c["patch_size"])  # CLAM-style coords (patch_size at level 0)
        else:
            raise InputError(f"{h5}: coords has neither patch_size_level0 nor patch_size at patch_level 0")
        level0_mpp = resolve_mpp(attrs, mpp, c.get("level0_magnification"))
        size = int(c.get("patch_size", size0))
        if encoder and "encoder" not in attrs:
            attrs["encoder"] = encoder
        if level0_mpp is not None:
            attrs["mpp"] = level0_mpp
        geo = geometry(level0_mpp, size0, size, coords)
        if "overlap" in c:  # TRIDENT records it; the grid only suggests it
            geo["overlap"] = int(c["overlap"])
        slides.append(Slide(h5.stem, feats.astype(np.float32), coords.astype(np.int64), geo, attrs,
                            meta_from(attrs)))
    return slides


FORMAT = FeatureFormat(read, write)
