"""What ``prepare`` writes for one source: its manifest row, ``coords/<id>.h5`` (the kept patches, their
geometry and provenance), its QuPath tiles and its materialised patch files; and ``cells.csv``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from cytofm import __version__
from cytofm.data.annotations.geojson import tile_feature, write_feature_collection
from cytofm.data.cells.store import cell_features, cell_rows, read_cells
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.tiles import Tiles
from cytofm.data.sources.inputs import SourceItem
from cytofm.data.sources.kinds import INPUT_KINDS
from cytofm.utils.io import atomic_path, write_csv


def manifest_row(item: SourceItem, src, tiles: Tiles, cfg: PrepareConfig, rel: str, digest: str) -> dict:
    whole, target = tiles.whole, tiles.target
    return {
        "id": item.id,
        "path": rel,
        "coords": f"coords/{item.id}.h5",
        "kind": item.kind,
        "width": src.width,
        "height": src.height,
        "mpp": "" if src.mpp is None else round(src.mpp, 6),
        "target_mpp": "" if target is None else round(target, 6),
        "patch_size": cfg.tiling.patch_size if not whole else "",
        "patch_size_level0": tiles.size0 if not whole else "",
        "patch_level": tiles.level,
        "whole": whole,
        "n_patches": int(tiles.keep.sum()),
        "n_candidates": int(len(tiles.coords)),
        "foreground_fraction": round(tiles.image_fraction, 4),
        "focus_median": "" if tiles.focus is None else round(float(np.median(tiles.focus[tiles.keep])), 4),
        "n_planes": getattr(src, "n_planes", ""),
        "z": str(src.policy) if INPUT_KINDS.get(item.kind).planes else "",
        "conversion": src.conversion,
        "source_sha256": digest,
        # the manifest's own mpp was read into src.mpp (a decimal comma too): its raw text is not kept over it
        **{k: v for k, v in item.meta.items() if k != "mpp"},
    }


def write_coords(h5_path: Path, item: SourceItem, src, tiles: Tiles, cfg: PrepareConfig, row: dict,
                  rel: str, provenance: dict) -> None:
    """``coords/<id>.h5``: the kept patches, their foreground, the geometry (on the dataset and the file, as
    CLAM and TRIDENT read it) and what decides whether a re-run may reuse it."""
    side = max(src.width, src.height)
    attrs = {
        "patch_size": cfg.tiling.patch_size if not tiles.whole else side,
        "patch_size_level0": tiles.size0 if not tiles.whole else side,
        "patch_level": tiles.level,
        "level0_width": src.width,
        "level0_height": src.height,
        "mpp": src.mpp if src.mpp is not None else np.nan,
        "target_mpp": tiles.target if tiles.target is not None else np.nan,
        "whole": tiles.whole,
        "n_planes": getattr(src, "n_planes", 1),
        "z_spacing_um": getattr(src, "z_spacing_um", None) or np.nan,
        "z_policy": str(src.policy) if INPUT_KINDS.get(item.kind).planes else "",
        "name": item.id,
        "source_path": rel,
        "cytofm_version": __version__,
    }
    with atomic_path(h5_path) as tmp:
        with h5py.File(tmp, "w") as f:
            d = f.create_dataset("coords", data=tiles.kept.astype(np.int64))
            f.create_dataset("foreground", data=tiles.fracs[tiles.keep])
            if tiles.focus is not None:
                f.create_dataset("focus", data=tiles.focus[tiles.keep])
                f.create_dataset("focus_blank", data=tiles.blank[tiles.keep])
            if tiles.planes is not None:
                f.create_dataset("z", data=tiles.planes[tiles.keep])
            for k, v in attrs.items():
                d.attrs[k] = v
                f.attrs[k] = v
            for k, v in provenance.items():
                f.attrs[k] = v
            f.attrs["row"] = json.dumps(row)


def write_geojson(path: Path, tiles: Tiles, cells=None) -> None:
    """The kept patches as QuPath tiles with their foreground fraction, to review the tiling in QuPath, and
    the detected cells as QuPath cells (outline, nucleus, measurements)."""
    w, h = tiles.patch_wh
    features = [tile_feature(int(x), int(y), w, h, {"Foreground fraction": float(f)})
                for (x, y), f in zip(tiles.kept, tiles.fracs[tiles.keep], strict=True)]
    write_feature_collection(path, features + (cell_features(cells) if cells is not None else []))


def materialize_files(src, row: dict, tiles: Tiles, cfg: PrepareConfig, out: Path) -> None:
    ext = "png" if cfg.output.materialize == "png" else "jpg"
    d = out / "patches" / row["id"]
    d.mkdir(parents=True, exist_ok=True)
    out_size = None if row["whole"] else cfg.tiling.patch_size
    for (x, y), z in zip(tiles.kept, tiles.kept_planes, strict=True):
        arr = src.read(int(x), int(y), tiles.patch_wh, out_size, z=z)
        name = f"{x}_{y}" if z is None else f"{x}_{y}_z{z}"
        with atomic_path(d / f"{name}.{ext}") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG" if ext == "png" else "JPEG", quality=95)


def write_cells_csv(out: Path, rows: list[dict]) -> int:
    """``cells.csv``: every prepared source's cells, one row each (reused sources included)."""
    table = []
    for r in rows:
        h5 = out / "cells" / f"{r['id']}.h5"
        if h5.is_file():
            table += cell_rows(r["id"], read_cells(h5))
    write_csv(out / "cells.csv", table, None if table else ["item", "cell", "x", "y"])
    return len(table)
