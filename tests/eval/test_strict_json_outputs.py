"""A cross-validation summary with undefined numbers (AUROC of a one-class test set, no interval from a
single test item) is written as strict JSON and read back as NaN, so a re-run reuses it."""

import json

import numpy as np

from cytofm.eval.cross_validation import load_method, markdown_table, results_table, run_method
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.splits import Split


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_summary_with_undefined_metrics_is_strict_json_and_reads_back(tmp_path):
    y = np.array([0, 1, 0, 1, 0])
    data = LabelledSet([f"i{k}" for k in range(5)], [np.zeros((1, 2))] * 5, y, ["a", "b"], None, None, 0)
    split = Split(0, 0, np.arange(4), np.array([4]))  # one test item: no AUROC, no interval

    def method(train, test, sp):
        return np.array([[0.8, 0.2]] * len(test)), None

    run_method("const", data, [split], method, tmp_path)
    s = _strict((tmp_path / "summary_const.json").read_text())
    assert s["auroc"]["mean"] is None and s["balanced_accuracy"]["ci95"] == [None, None]
    back = load_method("const", tmp_path)
    assert np.isnan(back["auroc"]["mean"]) and np.isnan(back["balanced_accuracy"]["ci95"][0])
    assert results_table([back])[0]["metric"] == "balanced_accuracy"
    assert "(no interval: fewer than 2 test items)" in markdown_table([back])
