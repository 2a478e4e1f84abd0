"""The model folder a `cytofm mil` run leaves: ``models/`` (every fold x seed model, and the refit one with
``--refit``) and ``model.json``, which makes the folder self-contained: what produced the features (the
encoder's identity, its readout and normalisation, the extract and prepare settings), what the model is
(registry name, arguments, classes in order, instance standardisation inside the weights), what it was
trained on (items and specimens with their content hashes, for the leakage check of ``cytofm predict``),
how well it did out of fold, and the operating point for screening."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cytofm import __version__
from cytofm.eval.config import PREDICT_USES
from cytofm.features.derived import CELL_UNIT
from cytofm.features.store import (
    STORE_FILE,
    extract_settings,
    identity_of,
    item_attrs,
    load_store,
    prepared_folder,
)
from cytofm.utils.errors import UserError
from cytofm.utils.io import atomic_path, strict_json

MODEL_FILE = "model.json"
PREPARE_RECORDED = ("tiling", "foreground", "resolution", "cells")
"""The prepare settings a model's features depend on (what the instances are), recorded and reapplied."""
FORMAT = 1
"""Bumped when ``model.json`` changes meaning; a folder of another format is refused with both numbers."""


class ModelFolderError(UserError, ValueError):
    """A model folder that cannot be used: not one, another format, a file missing."""


def _yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}


def features_record(store: Path) -> dict:
    """What produced a store's features: store.json (encoder identity, spec, readout, normalisation), the
    extract settings, and the prepare settings when the store was extracted from a prepared folder."""
    p = store / STORE_FILE
    extract = extract_settings(store)
    prepared = prepared_folder(store)
    prepare = _yaml(prepared / "config.yaml") if prepared else {}
    return {"store": json.loads(p.read_text()) if p.is_file() else _identity_from_items(store),
            "extract": extract,
            "prepare": {k: prepare[k] for k in PREPARE_RECORDED if k in prepare}}


def _identity_from_items(store: Path) -> dict:
    """A store written before store.json: what its items' attributes say (empty when they say nothing, and
    then ``cytofm predict`` can only refuse other stores)."""
    for r in load_store(store, check=False):
        a = item_attrs(r["h5"]) or {}
        if "weights_hash" in a:
            return {**identity_of(a), "encoder_spec": str(a.get("encoder_spec", ""))}
    return {}


def training_items(store: Path, ids: list[str], specimens, ensemble: np.ndarray | None = None) -> dict:
    """The items a model was trained on, by id and content hashes of their source (SHA-256 and pHash), and
    their specimens. ``ensemble`` (bool per item): the items the fold x seed models were trained on (a fixed
    split's test part is not); the refit model was trained on every item."""
    rows = {r["id"]: r for r in load_store(store, check=False)}
    groups = None if specimens is None else [str(g) for g in specimens]
    items = []
    for k, i in enumerate(ids):
        a = item_attrs(rows[i]["h5"]) or {}
        items.append({"id": i, "source_sha256": str(a.get("source_sha256", "")),
                      "source_phash": str(a.get("source_phash", "")),
                      "specimen": groups[k] if groups else "",
                      "in_ensemble": bool(ensemble[k]) if ensemble is not None else True})
    return {"items": items, "specimens": sorted(set(groups)) if groups else []}


def write_model_json(out: Path, record: dict) -> Path:
    path = out / MODEL_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(strict_json({"format": FORMAT, "cytofm_version": __version__, **record}))
    return path


def read_model_json(run: Path) -> dict:
    """``model.json`` of a model folder, checked: its format, and every fold x seed model it names present
    (a refit model is checked only when applied: :meth:`SavedModel.members`; the ensemble needs none)."""
    path = Path(run) / MODEL_FILE
    if not path.is_file():
        raise ModelFolderError(f"{run}: not a model folder (no {MODEL_FILE}; train one with `cytofm mil`)")
    try:
        rec = json.loads(path.read_text())
    except ValueError as e:
        raise ModelFolderError(f"{path}: unreadable ({e})") from None
    if rec.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: model folder format {rec.get('format')} (written by cytofm "
                               f"{rec.get('cytofm_version', '?')}); this cytofm {__version__} reads "
                               f"format {FORMAT}")
    groups = [rec, *rec.get("methods", {}).values()]
    files = dict.fromkeys(m["file"] for g in groups for m in g.get("members", []))
    missing = [f for f in files if not (Path(run) / f).is_file()]
    if missing:
        raise ModelFolderError(f"{run}: {len(missing)} model file(s) missing, e.g. {missing[0]}")
    return rec


@dataclass(frozen=True)
class TrainedItem:
    """An item a model was trained on, as ``model.json`` lists it. Folders written before the pHash, the
    specimen or a fixed split's test part were recorded read as: no pHash (''), specimen not recorded
    (None), in the ensemble."""

    id: str
    source_sha256: str = ""
    source_phash: str = ""
    specimen: str | None = None
    in_ensemble: bool = True


_ITEM_FIELDS = frozenset(TrainedItem.__dataclass_fields__)


@dataclass(frozen=True)
class SavedModel:
    """A model folder read once, as ``cytofm predict`` applies it: for a probe run, the members, refit model
    and operating point of one saved method (``method``, default the run's first). ``record`` is
    ``model.json`` as read, which is never rewritten."""

    folder: Path
    record: dict = field(repr=False)
    kind: str
    classes: tuple[str, ...]
    feature_dim: int
    method: str | None
    """The probe method applied; None for a MIL model."""
    ensemble: tuple[str, ...]
    """The fold x seed models' files, relative to ``folder``."""
    refit: str | None
    operating_point: dict | None
    architecture: dict | None
    trained_on: tuple[TrainedItem, ...] = field(repr=False)

    @classmethod
    def read(cls, folder: Path, method: str | None = None) -> SavedModel:
        """``model.json`` of ``folder``, checked (format, model files present)."""
        return cls.from_record(read_model_json(folder), folder, method)

    @classmethod
    def from_record(cls, rec: dict, folder: Path, method: str | None = None) -> SavedModel:
        """The record of an already read ``model.json`` (a probe run's ``method`` refused unless saved)."""
        chosen = rec
        if rec["kind"] == "probe":
            method = method or rec["default_method"]
            if method not in rec["methods"]:
                raise ModelFolderError(f"this probe run saved {', '.join(rec['methods'])}, not '{method}'")
            if method != rec["default_method"]:
                chosen = rec["methods"][method]
        refit = chosen.get("refit")
        return cls(Path(folder), rec, rec["kind"], tuple(rec["classes"]), int(rec["feature_dim"]),
                   method if rec["kind"] == "probe" else None,
                   tuple(m["file"] for m in chosen["members"]), refit["file"] if refit else None,
                   chosen.get("operating_point"), rec.get("architecture"),
                   tuple(TrainedItem(**{k: v for k, v in i.items() if k in _ITEM_FIELDS})
                         for i in rec["trained_on"]["items"]))

    @property
    def identity(self) -> dict:
        """What produced the features: the store's identity, encoder spec, readout and unit."""
        return self.record["features"]["store"]

    @property
    def extract(self) -> dict:
        return self.record["features"].get("extract") or {}

    @property
    def prepare(self) -> dict:
        """The recorded prepare settings (``PREPARE_RECORDED``); empty when the prepared folder was not
        found when the model was saved."""
        return self.record["features"].get("prepare") or {}

    @property
    def encoder_spec(self) -> str:
        return self.identity.get("encoder_spec", "")

    @property
    def label(self) -> str | None:
        return self.record["training"].get("label")

    @property
    def group_column(self) -> str | None:
        return self.record["training"].get("group_column")

    @property
    def unit(self) -> str:
        """What an item of the model's features was: a single cell (``CELL_UNIT``), or '' for an image."""
        return str(self.identity.get("unit") or "")

    @property
    def reads_cells(self) -> bool:
        """Whether the model was trained on single cells as items (and so classifies each cell)."""
        return self.unit == CELL_UNIT and self.kind == "probe"

    def members(self, use: str) -> list[Path]:
        """The model files ``--use`` applies: the fold x seed models, or the refit model (whose file is
        checked here, so that a folder without it still serves ``--use ensemble``)."""
        if use not in PREDICT_USES:
            raise ModelFolderError(f"--use must be one of {', '.join(PREDICT_USES)}, not '{use}'")
        if use == "refit":
            if not self.refit:
                raise ModelFolderError("this model folder has no refit model (train it with "
                                       "`cytofm mil --refit`)")
            if not (self.folder / self.refit).is_file():
                raise ModelFolderError(f"{self.folder / self.refit}: the refit model file is missing; "
                                       "apply the fold x seed models with --use ensemble, or train again "
                                       "with --refit")
            return [self.folder / self.refit]
        return [self.folder / f for f in self.ensemble]

    def trained_items(self, use: str) -> list[TrainedItem]:
        """The training items of what is applied: the refit model saw every labelled item, the ensemble the
        items some fold x seed model was trained on (a fixed split's test part is not among them)."""
        return list(self.trained_on) if use == "refit" else [i for i in self.trained_on if i.in_ensemble]

    def trained_specimens(self, use: str) -> set[str]:
        """The specimens of those items; for a folder written before items named their specimen, the run's
        list of specimens (every item was then in the ensemble)."""
        items = self.trained_items(use)
        if any(i.specimen is None for i in items):
            return set(self.record["trained_on"].get("specimens") or [])
        return {i.specimen for i in items if i.specimen}


def _cv(summary: dict) -> dict:
    from cytofm.eval.metrics import METRICS

    return {k: {"mean": summary[k]["mean"], "ci95": summary[k]["ci95"]} for k in METRICS if k in summary}


def positive_index(classes: list[str], positive: str | None) -> int:
    """The index of the class a two-class operating point screens for: ``positive``, or the second."""
    if positive is None:
        return 1
    if positive not in classes:
        raise ValueError(f"--positive-class '{positive}' is not a class of this task ({', '.join(classes)})")
    return classes.index(positive)


def operating_point_record(classes: list[str], summary: dict, target: float,
                           positive: str | None) -> dict | None:
    """Two-class tasks: the threshold on the positive class's out-of-fold probability (seed ensemble)."""
    from cytofm.eval.operating_point import threshold_for_sensitivity

    if len(classes) != 2:
        return None
    oof, k = summary["_oof"], positive_index(classes, positive)
    try:
        op = threshold_for_sensitivity(oof["y"] == k, oof["proba"][:, k], target)
    except ValueError as e:  # e.g. a fixed split whose test part holds one class
        return {"positive_class": classes[k], "threshold": None, "note": str(e)}
    return {"positive_class": classes[k], **op,
            "note": "chosen on the out-of-fold probabilities (mean over seeds); applied to the ensemble mean "
                    "or the refit model, whose sensitivity at it is not guaranteed"}


def _common(store: Path, data, settings: dict, dim: int, summary: dict) -> dict:
    return {"classes": list(data.classes), "training": settings, "feature_dim": int(dim),
            "features": features_record(store),
            "trained_on": training_items(store, data.ids, data.groups, summary.get("_trained"))}


def mil_record(store: Path, data, summary: dict, arch: dict, settings: dict, target: float,
               refit: dict | None, positive: str | None = None) -> dict:
    """``model.json``'s content for a cross-validated MIL run (``summary`` from ``evaluate_mil`` with its
    members saved); two-class tasks get the operating point for ``target`` sensitivity of ``positive``
    (default: the second class in order)."""
    return {"kind": "mil", **_common(store, data, settings, arch["in_dim"], summary), "architecture": arch,
            "members": summary["_members"], "refit": refit, "cross_validation": _cv(summary),
            "operating_point": operating_point_record(data.classes, summary, target, positive)}


def probe_record(store: Path, data, summaries: list[dict], settings: dict, target: float,
                 refits: dict[str, dict], positive: str | None = None) -> dict:
    """``model.json`` for a probe run: each saved probe method with its members, metrics and operating
    point; the first is the one ``cytofm predict`` applies unless told another (``--method``)."""
    methods = {s["method"]: {"members": s["_members"], "refit": refits.get(s["method"]),
                             "cross_validation": _cv(s),
                             "operating_point": operating_point_record(data.classes, s, target, positive)}
               for s in summaries if s.get("_members")}
    first = next(iter(methods))
    return {"kind": "probe", **_common(store, data, settings, data.bags[0].shape[1], summaries[0]),
            "methods": methods,
            "default_method": first, **{k: methods[first][k] for k in ("members", "refit",
                                                                       "operating_point")}}


def save_mil_run(store: Path, out: Path, data, summary: dict, cfg) -> tuple[Path, dict | None]:
    """``model.json`` of a ``cytofm mil`` run (``cfg``: its ``MilConfig``) beside the fold x seed models it
    saved, and the refit model when ``cfg.refit`` (its inner cut keeping whole the groups the folds kept)."""
    from cytofm.eval.evaluate_store import refit_mil
    from cytofm.mil.config import MILTrainConfig
    from cytofm.mil.saved import architecture

    refit = (refit_mil(data, out, cfg.epochs, cfg.lr, cfg.model, threads=cfg.threads,
                       groups=summary.get("_groups")) if cfg.refit else None)
    arch = architecture(MILTrainConfig(model=cfg.model), data.bags[0].shape[1], len(data.classes))
    settings = {"epochs": cfg.epochs, "lr": cfg.lr, "label": cfg.label, "group_column": cfg.group_column,
                "exclude": list(cfg.exclude)}
    return write_model_json(out, mil_record(store, data, summary, arch, settings, cfg.target_sensitivity,
                                            refit, getattr(cfg, "positive_class", None))), refit
