"""predict's summary says specimen leakage was not checked in words a user can act on, and not at all
where there is nothing to check: a model without specimens, or cells grouped by the field cytofm chose."""

from __future__ import annotations

from cytofm.eval.saved_model import SavedModel
from cytofm.pipeline.predict_tables import write_summary

STORE = {"encoder": "handcrafted", "weights_hash": "h1", "embed_dim": 4, "input_size": 64, "mode": "tiles",
         "tta": False, "encoder_spec": "handcrafted"}


def _model(tmp_path, group: str | None, specimens: list[str], unit: str = "") -> SavedModel:
    items = [{"id": f"t{k}", "source_sha256": f"s{k}", "source_phash": "", "specimen": s, "in_ensemble": True}
             for k, s in enumerate(specimens or ["", ""])]
    rec = {"format": 1, "kind": "probe", "classes": ["a", "b"], "feature_dim": 4,
           "training": {"label": "type", "group_column": group},
           "features": {"store": {**STORE, "unit": unit}}, "default_method": "linear",
           "methods": {"linear": {"members": [], "refit": None, "operating_point": None}},
           "members": [], "refit": None, "operating_point": None,
           "trained_on": {"items": items, "specimens": sorted(set(specimens))}}
    return SavedModel.from_record(rec, tmp_path)


def _table(specimen: str = "") -> list[dict]:
    return [{"id": f"n{k}", "path": "", "specimen": specimen, "p_a": 0.5, "p_b": 0.5, "pred": "a",
             "label": "", "label_given": "", "correct": "", "trained_on": False, "specimen_trained_on": False,
             "seen_in_pretraining": False, "excluded": False, "checked_by": "bytes+phash"} for k in range(2)]


def test_an_unchecked_specimen_is_said_with_what_to_do_and_only_when_there_is_something_to_check(tmp_path):
    patient = _model(tmp_path, "patient", ["p1", "p2", "p3"])
    _, lines = write_summary(patient, _table(), False, tmp_path, 1)
    assert lines[1] == ("specimen leakage not checked: the model's training items were grouped by their "
                        "'patient' (3 specimen(s), listed in model.json) and the input gives none; to flag "
                        "new items of a specimen the model was trained on, give --input as a manifest CSV "
                        "with a 'patient' column (each item's specimen, patient or case)")
    quiet = [(patient, _table("p9")),  # the input gives its specimens: they are checked
             (_model(tmp_path, "patient", []), _table()),  # no specimens recorded: nothing to check against
             (_model(tmp_path, "field", ["f1", "f2"], unit="cell"), _table())]  # cells by their field
    for model, table in quiet:
        _, lines = write_summary(model, table, False, tmp_path, 1)
        assert not [ln for ln in lines if "leakage not checked" in ln], lines
