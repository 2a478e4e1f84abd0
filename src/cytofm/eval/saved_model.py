"""The model folder a `cytofm mil` run leaves: ``models/`` (every fold x seed model, and the refit one with
``--refit``) and ``model.json``, which makes the folder self-contained: what produced the features (the
encoder's identity, its readout and normalisation, the extract and prepare settings), what the model is
(registry name, arguments, classes in order, instance standardisation inside the weights), what it was
trained on (items and specimens with their content hashes, for the leakage check of ``cytofm predict``),
how well it did out of fold, and the operating point for screening."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cytofm import __version__
from cytofm.features.store import STORE_FILE, identity_of, item_attrs, load_store
from cytofm.utils.errors import UserError
from cytofm.utils.io import atomic_path

MODEL_FILE = "model.json"
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
    extract = _yaml(store / "config.yaml")
    # a prepared input, or the folder extract prepared itself from plain images
    prepared = [d for d in (Path(str(extract.get("input", ""))), store / "prepared")
                if str(d) not in ("",
                                  ".") and (d / "manifest.csv").is_file() and (d / "config.yaml").is_file()]
    prepare = _yaml(prepared[0] / "config.yaml") if prepared else {}
    return {"store": json.loads(p.read_text()) if p.is_file() else _identity_from_items(store),
            "extract": extract,
            "prepare": {k: prepare[k] for k in ("tiling", "foreground", "resolution") if k in prepare}}


def _identity_from_items(store: Path) -> dict:
    """A store written before store.json: what its items' attributes say (empty when they say nothing, and
    then ``cytofm predict`` can only refuse other stores)."""
    for r in load_store(store, check=False):
        a = item_attrs(r["h5"]) or {}
        if "weights_hash" in a:
            return {**identity_of(a), "encoder_spec": str(a.get("encoder_spec", ""))}
    return {}


def training_items(store: Path, ids: list[str], specimens) -> dict:
    """The items a model was trained on, by id and content hash of their source, and their specimens."""
    rows = {r["id"]: r for r in load_store(store, check=False)}
    items = []
    for i in ids:
        a = item_attrs(rows[i]["h5"]) or {}
        items.append({"id": i, "source_sha256": str(a.get("source_sha256", ""))})
    return {"items": items, "specimens": sorted({str(s) for s in specimens}) if specimens is not None else []}


def write_model_json(out: Path, record: dict) -> Path:
    path = out / MODEL_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "cytofm_version": __version__, **record}, indent=2))
    return path


def read_model_json(run: Path) -> dict:
    """``model.json`` of a model folder, checked: its format, and every model file it names present."""
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
    missing = [m["file"] for m in rec.get("members", []) + ([rec["refit"]] if rec.get("refit") else [])
               if not (Path(run) / m["file"]).is_file()]
    if missing:
        raise ModelFolderError(f"{run}: {len(missing)} model file(s) missing, e.g. {missing[0]}")
    return rec


def mil_record(store: Path, data, summary: dict, arch: dict, settings: dict, target: float,
               refit: dict | None) -> dict:
    """``model.json``'s content for a cross-validated MIL run (``summary`` from ``evaluate_mil`` with its
    members saved); two-class tasks get the operating point for ``target`` sensitivity, positive class the
    second in order."""
    from cytofm.eval.metrics import METRICS
    from cytofm.eval.operating_point import threshold_for_sensitivity

    rec = {"kind": "mil", "classes": list(data.classes), "architecture": arch, "training": settings,
           "feature_dim": arch["in_dim"], "features": features_record(store), "members": summary["_members"],
           "refit": refit, "trained_on": training_items(store, data.ids, data.groups),
           "cross_validation": {k: {"mean": summary[k]["mean"], "ci95": summary[k]["ci95"]}
                                for k in METRICS if k in summary},
           "operating_point": None}
    if len(data.classes) == 2:
        oof = summary["_oof"]
        op = threshold_for_sensitivity(oof["y"] == 1, oof["proba"][:, 1], target)
        rec["operating_point"] = {"positive_class": data.classes[1], **op}
    return rec
