"""Learned segmenters as plug-ins: Cellpose, InstanSeg and StarDist, used where the package and its weights
are installed locally. cytofm never downloads weights (the machines it runs on may have no internet, and a
silent download is a model nobody chose): the weights file is named by ``cells.weights`` or looked for under
``$CYTOFM_CELL_WEIGHTS/<detector>/``, and a missing package or file is refused with both named. A plug-in
gives a label image; measurements, nuclei and outlines are cytofm's own (``morphometrics``), so every
detector's cells are described alike."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from cytofm.data.cells.morphometrics import measure_cells
from cytofm.data.cells.stains import stain_concentrations, stain_matrix
from cytofm.data.cells.table import CellTable
from cytofm.data.cells.watershed import disk_area_px, drop_small, nuclear_mask
from cytofm.data.prepare.config import CellsConfig
from cytofm.data.prepare.foreground import background_intensity, optical_density
from cytofm.utils.errors import UserError

WEIGHTS_ENV = "CYTOFM_CELL_WEIGHTS"


class DetectorUnavailable(UserError, RuntimeError):
    """A plug-in whose package or weights are not installed here."""


def weights_file(name: str, cfg: CellsConfig, suffixes: tuple[str, ...]) -> Path:
    """The weights of plug-in ``name``: ``cells.weights``, else the one file under
    ``$CYTOFM_CELL_WEIGHTS/<name>/`` (or ``~/.cache/cytofm/cells/<name>/``) with one of ``suffixes``."""
    if cfg.weights:
        p = Path(cfg.weights).expanduser()
        if not p.exists():
            raise DetectorUnavailable(f"cell detector '{name}': weights {p} not found (cells.weights)")
        return p
    root = Path(os.environ.get(WEIGHTS_ENV, "~/.cache/cytofm/cells")).expanduser() / name
    found = sorted(p for p in root.glob("*") if p.suffix in suffixes or p.is_dir()) if root.is_dir() else []
    if not found:
        raise DetectorUnavailable(
            f"cell detector '{name}': no weights in {root} (looked for {', '.join(suffixes)} or a model "
            f"folder); cytofm does not download them: put the file there, set ${WEIGHTS_ENV}, or give "
            "cells.weights=PATH")
    return found[0]


def _module(package: str, name: str):
    try:
        return importlib.import_module(package)
    except ImportError:
        raise DetectorUnavailable(f"cell detector '{name}' needs the package '{package}', which is not "
                                  f"installed here (pip install {package}); the default detector "
                                  "'watershed' needs nothing") from None


def _from_labels(labels: np.ndarray, rgb: np.ndarray, mpp: float, cfg: CellsConfig,
                 scale: float) -> CellTable:
    labels = drop_small(np.asarray(labels, np.int32), disk_area_px(cfg.min_diameter_um, mpp))
    od = optical_density(rgb, background_intensity(rgb, cfg.min_background))
    conc = stain_concentrations(od, stain_matrix(cfg.stain, od if cfg.stain == "estimate" else None))
    return measure_cells(labels, nuclear_mask(conc, labels > 0, cfg, mpp), conc, mpp, set(), scale,
                         cfg.contour_tolerance_px)


def detect_cellpose(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    models = _module("cellpose", "cellpose").models
    model = models.CellposeModel(pretrained_model=str(weights_file("cellpose", cfg, (".pth", ""))))
    masks = model.eval(rgb, diameter=cfg.typical_diameter_um / mpp)[0]
    return _from_labels(masks, rgb, mpp, cfg, scale)


def detect_instanseg(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    mod = _module("instanseg", "instanseg")
    model = mod.InstanSeg(str(weights_file("instanseg", cfg, (".pt", ".pth"))), verbosity=0)
    labels = model.eval_small_image(rgb, pixel_size=mpp)[0]
    labels = np.asarray(getattr(labels, "numpy", lambda: labels)()).squeeze()
    return _from_labels(labels if labels.ndim == 2 else labels[-1], rgb, mpp, cfg, scale)


def detect_stardist(rgb: np.ndarray, mpp: float, cfg: CellsConfig, scale: float = 1.0) -> CellTable:
    mod = _module("stardist.models", "stardist")
    folder = weights_file("stardist", cfg, ("",))
    model = mod.StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    labels, _ = model.predict_instances(rgb.astype(np.float32) / 255.0)
    return _from_labels(labels, rgb, mpp, cfg, scale)
