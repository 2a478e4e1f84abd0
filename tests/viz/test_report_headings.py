"""The report says what each summary's intervals are (a predict folder's item bootstrap is not headed as
paired, Holm-corrected intervals) and heads every results table with the file it comes from."""

import re
from types import SimpleNamespace

import numpy as np

from cytofm.pipeline.predict_tables import prediction_rows, write_summary
from cytofm.viz.report import build_report


def test_a_predict_folder_is_not_headed_as_holm_corrected(tmp_path):
    model = SimpleNamespace(classes=("bad", "good"), label="label", group_column=None,
                            operating_point={"positive_class": "bad", "threshold": 0.5}, unit="item",
                            trained_specimens=lambda use: [])
    p = np.array([0.9, 0.8, 0.2, 0.1])
    rows = [{"id": f"i{k}", "path": "", "label": lab} for k, lab in enumerate(["bad", "bad", "good", "good"])]
    table = prediction_rows(model, rows, np.stack([p, 1 - p], 1)[None],
                            [{"trained_on": False, "checked_by": "bytes"} for _ in rows])
    write_summary(model, table, False, tmp_path, 1)
    text = build_report(tmp_path).read_text()
    assert "Holm" not in text
    assert ("<p class='how'>Intervals: 95% percentile bootstrap over the items for the metrics; 95% Wilson "
            "score intervals for sensitivity and specificity at the operating point.</p>") in text


def test_a_benchmark_summary_says_its_intervals_and_tables_are_headed_by_their_file(tmp_path):
    from cytofm.eval.summary import write_summary as benchmark_summary

    benchmark_summary(tmp_path / "summary.md", ["cells (linear): cytofm does NOT beat random init."])
    (tmp_path / "results.md").write_text("| task | bacc |\n|---|---|\n| t | 0.9 |\n")
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "results.md").write_text("| method | bacc |\n|---|---|\n| linear | 0.8 |\n")
    text = build_report(tmp_path).read_text()
    assert "differences paired per fold, their p-values Holm-corrected across the comparisons." in text
    results = text[text.index("<h2>Results"):]
    assert re.findall(r"<h3>([^<]*)</h3>", results)[:2] == ["probe/results.md", "results.md"]
