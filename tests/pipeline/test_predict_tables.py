"""What `cytofm predict` says about labelled new cases: sensitivity and specificity at the operating point it
applies (with Wilson intervals), labels that are not the model's classes named, case variants warned, strict
JSON, no raw scikit-learn warning; and tables that join back to the user's manifest."""

from __future__ import annotations

import csv
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from cytofm.pipeline.predict_tables import prediction_rows, write_summary

CLASSES = ("bad", "good")


def _model(threshold: float | None = 0.5):
    op = None if threshold is None else {"positive_class": "bad", "threshold": threshold}
    return SimpleNamespace(classes=CLASSES, label="label", group_column=None, operating_point=op,
                           unit="item", trained_specimens=lambda use: [])


def _table(p_bad: list[float], labels: list[str], model=None):
    """Prediction rows of items with these p(bad) and labels (one model, no leakage flag)."""
    model = model or _model()
    p = np.array(p_bad)
    probs = np.stack([p, 1 - p], 1)[None]
    rows = [{"id": f"i{k}", "path": "", "label": lab} for k, lab in enumerate(labels)]
    flags = [{"trained_on": False, "checked_by": "bytes+phash"} for _ in rows]
    return prediction_rows(model, rows, probs, flags)


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_sensitivity_and_specificity_at_the_applied_operating_point(tmp_path):
    """39 bad items of which 35 reach p(bad) >= 0.5, 39 good of which 38 stay below: 35/39 = 0.897 and
    38/39 = 0.974, with the Wilson score intervals (z = 1.96) computed by hand:
    centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)."""
    p_bad = [0.9] * 35 + [0.2] * 4 + [0.1] * 38 + [0.7]
    labels = ["bad"] * 39 + ["good"] * 39
    _, lines = write_summary(_model(), _table(p_bad, labels), False, tmp_path, 1)
    s = _strict((tmp_path / "summary.json").read_text())["at_operating_point"]
    assert s["positive_class"] == "bad" and s["ci95_method"] == "Wilson score interval"
    sens, spec = s["sensitivity"], s["specificity"]
    assert (sens["flagged"], sens["n_positive"], spec["cleared"], spec["n_negative"]) == (35, 39, 38, 39)
    assert sens["value"] == pytest.approx(0.8974, abs=1e-4)
    assert spec["value"] == pytest.approx(0.9744, abs=1e-4)
    assert sens["ci95"] == pytest.approx([0.7642, 0.9594], abs=1e-4)
    assert spec["ci95"] == pytest.approx([0.8682, 0.9955], abs=1e-4)
    assert ("at the operating point applied (p(bad) >= 0.5): sensitivity 0.897 [0.764, 0.959] (35 of 39), "
            "specificity 0.974 [0.868, 0.995] (38 of 39) (95% Wilson score intervals)") in lines
    assert "Wilson score intervals for sensitivity and specificity" in (tmp_path / "summary.md").read_text()


def test_no_operating_point_no_screening_numbers(tmp_path):
    write_summary(_model(None), _table([0.9, 0.1], ["bad", "good"], _model(None)), False, tmp_path, 1)
    assert _strict((tmp_path / "summary.json").read_text())["at_operating_point"] is None


def test_labels_that_are_not_the_models_classes_are_named_and_not_counted_wrong(tmp_path):
    table = _table([0.1, 0.2, 0.3, 0.9, 0.1], ["gut", "gut", "gut", "bad", "mixed"])
    assert [r["correct"] for r in table] == ["", "", "", True, ""]
    metrics, lines = write_summary(_model(), table, False, tmp_path, 1)
    assert ("4 item(s) with a label that is not one of the model's classes (bad, good), left out of the "
            "metrics: 'gut' (3), 'mixed' (1)") in lines
    only_unknown = _table([0.1, 0.2], ["gut", "gut"])
    metrics, lines = write_summary(_model(), only_unknown, False, tmp_path, 1)
    assert metrics is None
    assert ("no metrics: none of the 2 labelled item(s) has a label among the model's classes (bad, good)"
            in lines)


def test_label_variants_are_taken_as_the_class_and_warned(tmp_path):
    table = _table([0.9, 0.8, 0.1, 0.2], ["BAD", "bad ", "Good", "good"])
    assert [r["label"] for r in table] == ["bad", "bad", "good", "good"]
    assert [r["label_given"] for r in table] == ["BAD", "bad ", "Good", ""]
    assert all(r["correct"] is True for r in table)
    _, lines = write_summary(_model(), table, False, tmp_path, 1)
    assert ("warning: labels differing from the model's classes only by case or surrounding spaces, taken as "
            "those classes: 'BAD' as 'bad' (1), 'bad ' as 'bad' (1), 'Good' as 'good' (1)") in lines


def test_summary_json_is_strict_and_no_raw_warning_when_a_class_is_absent(tmp_path):
    """Only good items, one of them called bad: AUROC is undefined (null, never a bare NaN) and the class
    absent from the labels is said in words instead of scikit-learn's warning."""
    table = _table([0.1, 0.2, 0.7], ["good", "good", "good"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics, lines = write_summary(_model(), table, False, tmp_path, 1)
    assert [str(w.message) for w in caught] == []
    data = _strict((tmp_path / "summary.json").read_text())
    assert data["metrics"]["auroc"] == {"value": None, "ci95": [None, None]}
    assert data["at_operating_point"]["sensitivity"]["value"] is None
    assert ("class(es) absent from the labels: bad: balanced accuracy is the mean recall of the 1 class(es) "
            "present; AUROC is not defined with one class") in lines
    assert "sensitivity not measured (no positive item), specificity 0.667" in " ".join(lines)


def test_a_class_with_one_item_gets_a_warning_about_its_interval(tmp_path):
    table = _table([0.9, 0.1, 0.2, 0.3, 0.1], ["bad", "good", "good", "good", "good"])
    _, lines = write_summary(_model(), table, False, tmp_path, 1)
    assert ("warning: class(es) with a single labelled item: bad: its recall is 0 or 1, so the bootstrap "
            "interval is lopsided and unreliable; label more items") in lines


def _fields(root, n: int, seed: int):
    """Fields of two kinds a colour feature tells apart: purple cells (benign) or red ones (malignant)."""
    from PIL import Image

    from cytofm.utils.io import write_csv

    from tests.helpers import smear

    rng = np.random.default_rng(seed)
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        kind = ["benign", "malignant"][k % 2]
        cells = [(int(rng.integers(40, 200)), int(rng.integers(40, 200)), int(rng.integers(20, 35)))
                 for _ in range(4)]
        rgb, _ = smear(240, 240, cells, (120, 80, 160) if kind == "benign" else (190, 70, 70),
                       seed=seed * 100 + k)
        Image.fromarray(rgb).save(root / f"{seed}_{k}.png")
        rows.append({"path": f"{seed}_{k}.png", "label": kind})
    write_csv(root / "manifest.csv", rows)
    return root / "manifest.csv"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predictions_carry_the_input_columns_and_paths_as_given(tmp_path):
    """A probe trained on 8 fields applied to a manifest with its own columns and no specimen column: each
    row carries the manifest's path value and its columns; specimens.csv has its header, no rows."""
    from typer.testing import CliRunner

    from cytofm.cli.main import app
    from cytofm.pipeline.predict import run_predict

    runner = CliRunner()
    train = _fields(tmp_path / "train", 8, 0)
    for args in (["extract", "--input", str(train), "--mode", "tiles", "--encoder", "handcrafted", "--out",
                  str(tmp_path / "store"), "workers=0"],
                 ["probe", "--features", str(tmp_path / "store"), "--label", "label", "--out",
                  str(tmp_path / "run"), "--folds", "2", "--seeds", "0", "methods=linear"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    new = _fields(tmp_path / "new", 4, 1)
    rows = _rows(new)
    for k, r in enumerate(rows):
        r.update({"case_note": f"n{k}", "slide_box": "B7"})
    with open(new, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run_predict(tmp_path / "run", new, tmp_path / "pred", heatmaps=0, log=lambda m: None)
    pred = _rows(tmp_path / "pred" / "predictions.csv")
    assert [p["path"] for p in pred] == ["1_0.png", "1_1.png", "1_2.png", "1_3.png"]
    assert [(p["case_note"], p["slide_box"]) for p in pred] == [(f"n{k}", "B7") for k in range(4)]
    assert (tmp_path / "pred" / "specimens.csv").read_text().splitlines() == [
        "specimen,n_items,p_benign,p_malignant,pred"]
