"""A model folder is read once into a ``SavedModel``: folders written by earlier versions still load, the
record round-trips (read -> the same fields, written back -> the same bytes), and what ``--use`` and
``--method`` ask of it is answered or refused by name."""

from __future__ import annotations

import json

import pytest

from cytofm.eval.saved_model import MODEL_FILE, ModelFolderError, SavedModel, TrainedItem, write_model_json

FIELDS = list(SavedModel.__dataclass_fields__)
STORE = {"encoder": "handcrafted", "weights_hash": "h1", "embed_dim": 16, "input_size": 64, "mode": "tiles",
         "tta": False, "encoder_spec": "handcrafted"}


def _folder(tmp_path, rec: dict, name: str = "run"):
    run = tmp_path / name
    (run / "models").mkdir(parents=True)
    for g in [rec, *rec.get("methods", {}).values()]:
        for m in g["members"] + ([g["refit"]] if g.get("refit") else []):
            (run / m["file"]).write_bytes(b"")
    (run / MODEL_FILE).write_text(json.dumps(rec, indent=2))
    return run


def _first_mil_record() -> dict:
    """``model.json`` as the first cytofm that saved models wrote it: items by id and SHA-256 alone (no
    pHash, specimen or ensemble membership), the specimens listed apart, no unit in the store record."""
    return {"format": 1, "cytofm_version": "0.1.0", "kind": "mil", "classes": ["benign", "malignant"],
            "architecture": {"name": "abmil", "in_dim": 16, "n_classes": 2},
            "training": {"epochs": 15, "lr": 0.001, "label": "label", "group_column": "specimen",
                         "exclude": []},
            "feature_dim": 16,
            "features": {"store": STORE, "extract": {"batch_size": 32, "workers": 0},
                         "prepare": {"tiling": {"patch_size": 224}}},
            "members": [{"file": f"models/abmil_seed0_fold{f}.safetensors", "seed": 0, "fold": f}
                        for f in range(3)],
            "refit": {"file": "models/abmil_refit.safetensors"},
            "trained_on": {"items": [{"id": "t000", "source_sha256": "sha-t000"},
                                     {"id": "t001", "source_sha256": "sha-t001"}],
                           "specimens": ["p0", "p1"]},
            "cross_validation": {"balanced_accuracy": {"mean": 0.9, "ci95": [0.8, 1.0]}},
            "operating_point": {"positive_class": "malignant", "threshold": 0.4, "sensitivity": 0.95}}


def _probe_record() -> dict:
    """``model.json`` of a probe run as this version writes it (a fixed split: one item outside the
    ensemble), two methods saved."""
    methods = {m: {"members": [{"file": f"models/{m}_seed0_fold{f}.safetensors", "seed": 0, "fold": f}
                               for f in range(2)],
                   "refit": {"file": f"models/{m}_refit.safetensors"} if m == "linear" else None,
                   "cross_validation": {},
                   "operating_point": {"positive_class": "b", "threshold": 0.5 if m == "linear" else 0.7}}
               for m in ("linear", "knn")}
    items = [{"id": f"c{k}", "source_sha256": f"s{k}", "source_phash": "0" * 16, "specimen": f"f{k}",
              "in_ensemble": k < 2} for k in range(3)]
    return {"format": 1, "cytofm_version": "0.3.0", "kind": "probe", "classes": ["a", "b"],
            "training": {"label": "type", "group_column": "field", "exclude": [], "knn_k": 20},
            "feature_dim": 8, "features": {"store": {**STORE, "mode": "cells", "unit": "cell"}, "extract": {},
                                           "prepare": {}},
            "trained_on": {"items": items, "specimens": ["f0", "f1", "f2"]},
            "methods": methods, "default_method": "linear",
            **{k: methods["linear"][k] for k in ("members", "refit", "operating_point")}}


def test_a_model_folder_of_the_first_format_loads_into_the_record(tmp_path):
    run = _folder(tmp_path, _first_mil_record())
    model = SavedModel.read(run)
    assert model.kind == "mil" and model.method is None and model.classes == ("benign", "malignant")
    assert model.feature_dim == 16 and model.architecture["name"] == "abmil"
    assert model.members("ensemble") == [run / f"models/abmil_seed0_fold{f}.safetensors" for f in range(3)]
    assert model.members("refit") == [run / "models/abmil_refit.safetensors"]
    assert model.operating_point["threshold"] == 0.4
    assert model.trained_items("ensemble") == [TrainedItem("t000", "sha-t000"),
                                               TrainedItem("t001", "sha-t001")]
    assert model.trained_items("ensemble")[0].source_phash == "" and model.trained_on[0].in_ensemble
    # no item named its specimen: the run's list is the one checked against
    assert model.trained_specimens("ensemble") == {"p0", "p1"}
    assert model.identity["weights_hash"] == "h1" and model.encoder_spec == "handcrafted"
    assert model.extract == {"batch_size": 32, "workers": 0} and model.prepare["tiling"]["patch_size"] == 224
    assert model.label == "label" and model.group_column == "specimen"
    assert model.unit == "" and not model.reads_cells


def test_the_record_round_trips(tmp_path):
    """Read -> the same fields; the record written back -> the same bytes."""
    for k, rec in enumerate((_first_mil_record(), _probe_record())):
        run = _folder(tmp_path, rec, f"run{k}")
        model = SavedModel.read(run)
        assert model.record == json.loads((run / MODEL_FILE).read_text()) == rec
        assert SavedModel.from_record(model.record, run) == model == SavedModel.read(run)
        body = {key: v for key, v in rec.items() if key not in ("format", "cytofm_version")}
        for name in ("written", "rewritten"):
            (tmp_path / f"{name}{k}").mkdir()
        written = write_model_json(tmp_path / f"written{k}", body)
        again = SavedModel.from_record(json.loads(written.read_text()), run)
        assert {f: getattr(again, f) for f in FIELDS if f != "record"} == {
            f: getattr(model, f) for f in FIELDS if f != "record"}
        body = {key: v for key, v in again.record.items() if key not in ("format", "cytofm_version")}
        rewritten = write_model_json(tmp_path / f"rewritten{k}", body)
        assert rewritten.read_bytes() == written.read_bytes()


def test_a_probe_run_is_read_for_the_method_asked(tmp_path):
    run = _folder(tmp_path, _probe_record())
    model = SavedModel.read(run)
    assert model.method == "linear" and model.operating_point["threshold"] == 0.5
    assert model.unit == "cell" and model.reads_cells
    knn = SavedModel.read(run, "knn")
    assert knn.method == "knn" and knn.operating_point["threshold"] == 0.7
    assert knn.members("ensemble") == [run / f"models/knn_seed0_fold{f}.safetensors" for f in range(2)]
    assert [i.id for i in knn.trained_items("ensemble")] == ["c0", "c1"]
    assert [i.id for i in knn.trained_items("refit")] == ["c0", "c1", "c2"]
    assert knn.trained_specimens("ensemble") == {"f0", "f1"}
    assert knn.trained_specimens("refit") == {"f0", "f1", "f2"}
    with pytest.raises(ModelFolderError, match="no refit model"):
        knn.members("refit")
    with pytest.raises(ModelFolderError, match="--use must be one of ensemble, refit, not 'all'"):
        model.members("all")
    with pytest.raises(ModelFolderError, match="saved linear, knn, not 'fewshot'"):
        SavedModel.read(run, "fewshot")


def test_a_missing_refit_file_refuses_only_use_refit_and_names_the_file(tmp_path):
    """The ensemble needs no refit model: deleting its file leaves ``--use ensemble`` as it was."""
    rec = _first_mil_record()
    run = _folder(tmp_path, rec)
    (run / "models/abmil_refit.safetensors").unlink()
    model = SavedModel.read(run)
    assert model.members("ensemble") == [run / f"models/abmil_seed0_fold{f}.safetensors" for f in range(3)]
    with pytest.raises(ModelFolderError, match=r"abmil_refit\.safetensors: the refit model file is missing; "
                                                r"apply the fold x seed models with --use ensemble"):
        model.members("refit")
    (run / "models/abmil_seed0_fold1.safetensors").unlink()  # a fold model is still needed at once
    with pytest.raises(ModelFolderError, match=r"1 model file\(s\) missing, e.g. models/abmil_seed0_fold1"):
        SavedModel.read(run)
