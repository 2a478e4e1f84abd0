"""The instances ``cytofm extract`` embeds, item by item: the kept patches of a prepared dataset, its
detected cells, or whole images (a plain folder or manifest in ``tiles`` mode is prepared first)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytofm.data.prepare.options import prepare_config
from cytofm.data.prepare.prepared import is_prepared_dir, load_prepared
from cytofm.data.sources.inputs import Skip, discover
from cytofm.data.sources.item_ids import ids_in_outputs
from cytofm.data.sources.resolution import BadResolution, parse_mpp
from cytofm.utils.errors import InputError
from cytofm.utils.io import portable_path, write_csv


@dataclass
class ExtractItem:
    id: str
    path: Path
    kind: str
    whole: bool
    coords: np.ndarray
    size0: int | None
    out_size: int | None
    mpp: float | None
    meta: dict = field(default_factory=dict)
    prepared_digest: str = ""  # the source's content hash when it was prepared ("" for raw inputs)
    cells: Path | None = None  # mode cells: the source's cells/<id>.h5
    typical_um: float | None = None  # mode cells: the typical cell diameter it was prepared with
    planes: np.ndarray | None = None  # z-stacks: the plane of each instance (None: the policy's)
    z: str = ""  # z-stacks: the plane policy it was prepared with


def collect_items(input: str | os.PathLike, mode: str, out: Path, label_column: str | None = None,
                  log=print, cell_crop_um: float | None = None, image_field_um: float | None = None,
                  chosen: dict | None = None, image_mpp: float | None = None
                  ) -> tuple[list[ExtractItem], list[Skip]]:
    """Instances to embed: kept patches of a prepared dataset (``tiles``), its detected cells (``cells``)
    or whole images (``image``). ``chosen`` receives what was decided here that the store must record
    (``image_field_um``, ``image_mpp``: the physical scale images were read at, so ``predict`` reads new
    ones alike; see :func:`common_scale`).

    A plain folder or manifest in ``tiles`` mode is prepared first (default preset) into ``OUT/prepared``.
    """
    p = Path(input)
    if not p.exists():
        raise InputError(f"{input}: no such file or folder")
    if mode == "cells":
        return cell_items(p, cell_crop_um)
    items, skips = _items(p, mode, out, label_column, log)
    if mode == "image":
        items, scale = common_scale(items, skips, log, image_field_um, image_mpp)
        if chosen is not None:
            chosen.update(scale)
    return items, skips


def _items(p: Path, mode: str, out: Path, label_column: str | None, log) -> tuple[list[ExtractItem],
                                                                                list[Skip]]:
    """Patches (``tiles``) or whole images (``image``) of a prepared set, or of a plain folder or manifest
    (prepared first in ``tiles`` mode)."""
    skips: list[Skip] = []
    if not is_prepared_dir(p) and mode == "tiles":
        from cytofm.data.prepare.run import NothingUsable, run_prepare

        # labels come from the manifest's column only (labels_from_folders off, the default), no QA images
        cfg = prepare_config("default", options={"label_column": label_column, "qa": 0})
        log(f"{p} is not a prepared dataset: preparing it with the default preset into "
            f"{out / 'prepared'}")
        try:
            res = run_prepare([str(p)], out / "prepared", cfg, log=log)
        except NothingUsable as e:
            raise InputError(str(e)) from None
        skips += res.skipped
        p = out / "prepared"
    items: list[ExtractItem] = []
    if is_prepared_dir(p):
        for it in load_prepared(p):
            if mode == "tiles" and not it.whole:
                items.append(ExtractItem(it.id, it.path, it.kind, False, it.coords(), it.size0, it.patch_size,
                                         it.mpp, it.meta, it.digest, planes=it.planes(), z=it.z))
            else:  # a z-stack's whole image once per recorded plane (all: every plane)
                planes = it.planes() if it.whole else None
                coords = np.zeros((1 if planes is None else len(planes), 2), np.int64)
                items.append(ExtractItem(it.id, it.path, it.kind, True, coords, None, None, it.mpp, it.meta,
                                         it.digest, planes=planes, z=it.z))
        return items, skips
    cfg = prepare_config(None, options={"label_column": label_column})
    collisions: list[dict] = []
    found, more, notes = discover([str(p)], cfg, ids_in_outputs(out / "features", out), collisions)
    for n in notes:
        log(f"note: {n}")
    write_csv(out / "id_collisions.csv", [{**c, "path": portable_path(c["path"], out)} for c in collisions],
              ["path", "id", "shared_name"])
    skips += more
    for it in found:
        meta = dict(it.meta)
        if p.is_dir():  # class sub-folders become the label column
            rel = it.path.relative_to(p)
            if len(rel.parts) > 1 and "label" not in meta:
                meta["label"] = rel.parts[0]
        items.append(ExtractItem(it.id, it.path, it.kind, True, np.zeros((1, 2), np.int64), None, None, None,
                                 meta))
    return items, skips


def cell_items(folder: Path, crop_um: float | None) -> tuple[list[ExtractItem], list[Skip]]:
    """One instance per detected cell of a folder prepared with ``--cells``: its square
    (``cytofm.data.cells.crops``). A source without cells is said in ``skipped.csv``."""
    from cytofm.data.cells.crops import cell_squares, folder_crop_um

    if not is_prepared_dir(folder) or not (folder / "cells").is_dir():
        raise InputError(f"{folder}: --mode cells needs a folder prepared with `cytofm prepare --cells` "
                         "(cells/<id>.h5)")
    crop_um, typical = folder_crop_um(folder, crop_um)
    items, skips = [], []
    for it in load_prepared(folder):
        h5 = folder / "cells" / f"{it.id}.h5"
        if not h5.is_file():
            skips.append(Skip(str(it.path), f"no {h5.name} in {folder / 'cells'}: prepared without --cells"))
            continue
        sq = cell_squares(h5, it.mpp, crop_um)
        if sq is None:
            skips.append(Skip(str(it.path), "no cell found in it (cells.csv has none)"))
            continue
        # a z-stack's cells each from its sharpest plane (under all too: instance k is cell k everywhere)
        items.append(ExtractItem(it.id, it.path, it.kind, False, sq.coords, sq.size0, None, sq.mpp,
                                 {**it.meta, "cell_crop_um": crop_um}, it.digest, h5, typical, sq.plane,
                                 it.z))
    return items, skips


def _read_mpps(items: list[ExtractItem], skips: list[Skip], log) -> list[ExtractItem]:
    """The items with a plain manifest's ``mpp`` read (a prepared set has read it); one refused by name."""
    kept = []
    for it in items:
        if it.mpp is None and it.meta.get("mpp"):
            try:
                it.mpp = parse_mpp(it.meta["mpp"])
            except BadResolution as e:
                skips.append(Skip(str(it.path), str(e)))
                log(f"skipped: {it.path}: {e}")
                continue
        kept.append(it)
    return kept


def common_scale(items: list[ExtractItem], skips: list[Skip], log=print, field_um: float | None = None,
                 whole_mpp: float | None = None) -> tuple[list[ExtractItem], dict]:
    """``--mode image``: images whose um/px is known (a prepared set's, or a manifest's ``mpp`` column) are
    embedded at one physical scale. The encoder resizes every image to its input size, so a 0.10 and a
    0.17 um/px crop of one pixel size would be seen at scales 1.7x apart: where um/px differ, each is read
    instead as a square field of one size in micrometres (the median of the images' fields, their longer side
    times their um/px), centred, white glass where an image is smaller. Images of one um/px are read whole as
    before. Either way the scale is returned for the store to record (``image_field_um``, and ``image_mpp``
    where the images were read whole at one um/px), and a run given them (``predict`` with a saved model's
    record) reads images of that um/px whole and any other um/px at the field: new cases are seen at the
    scale the model was trained at. Images without um/px are read whole and named."""
    from cytofm.features.formats.geometry import whole_size

    kept = _read_mpps(items, skips, log)
    known = [it for it in kept if it.mpp]
    mpps = {round(float(it.mpp), 6) for it in known}
    fields = {it.id: (whole_size(it.path, it.kind) or 0) * it.mpp for it in known}
    if not known or not any(f > 0 for f in fields.values()):
        if field_um is not None and kept:
            log(f"warning: {len(kept)} image(s) without um/px are embedded whole at their own scale, not at "
                f"the recorded {field_um:.4g} um field: give them an 'mpp' column")
        return kept, {}
    given = field_um is not None
    if given and whole_mpp is not None and mpps == {round(float(whole_mpp), 6)}:
        return _named_unknown(kept, log, field_um), {"image_field_um": field_um, "image_mpp": whole_mpp}
    if not given:
        field_um = float(np.median([f for f in fields.values() if f > 0]))
        if len(mpps) < 2:  # one um/px: read whole as ever, the scale recorded for new cases
            return _named_unknown(kept, log, None), {"image_field_um": field_um, "image_mpp": known[0].mpp}
    for it in known:
        if fields[it.id] > 0:  # an unreadable image is reported by extraction itself
            it.size0 = max(1, round(field_um / it.mpp))
    why = "as recorded or given" if given else "the median of the images' fields"
    log(f"note: images of {min(mpps):g} to {max(mpps):g} um/px are embedded at one physical scale: a square "
        f"field of {field_um:.4g} um centred on each ({why}), resampled by the encoder to its input size")
    return _named_unknown(kept, log, field_um), {"image_field_um": field_um, "image_mpp": None}


def _named_unknown(kept: list[ExtractItem], log, field_um: float | None) -> list[ExtractItem]:
    unknown = [it for it in kept if not it.mpp]
    if unknown:
        at = f", not at the {field_um:.4g} um field of the others" if field_um else ""
        log(f"warning: {len(unknown)} image(s) without um/px (e.g. {unknown[0].path}) are embedded whole at "
            f"their own scale{at}: give them an 'mpp' column")
    return kept
