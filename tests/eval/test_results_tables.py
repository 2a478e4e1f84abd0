"""Results tables (probe, mil, benchmark; the report renders them) carry the items' class counts and each
metric's chance level, so 0.52 balanced accuracy on five classes reads differently from 0.52 on two."""

from types import SimpleNamespace

import numpy as np
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.benchmark_report import result_rows, write_markdown
from cytofm.eval.cross_validation import markdown_table, results_table, run_method
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.splits import Split


def _summary(tmp_path):
    """Six items, classes a 3, b 2, c 1, predicted a perfect ranking over two folds."""
    y = np.array([0, 1, 2, 0, 1, 0])
    data = LabelledSet([f"i{k}" for k in range(6)], [np.zeros((1, 2))] * 6, y, ["a", "b", "c"], None, None, 0)
    splits = [Split(0, 0, np.array([3, 4, 5]), np.array([0, 1, 2])),
              Split(0, 1, np.array([0, 1, 2]), np.array([3, 4, 5]))]

    def method(train, test, sp):
        return np.eye(3)[y[test]] * 0.8 + 0.2 / 3, None

    return run_method("linear", data, splits, method, tmp_path)


def test_probe_tables_show_class_counts_and_chance(tmp_path):
    s = _summary(tmp_path)
    assert s["class_counts"] == {"a": 3, "b": 2, "c": 1}
    md = markdown_table([s])
    assert "| chance | 0.333 | - | 0.500 | 0.500 |" in md  # 1/3 classes; AUROC 0.5; accuracy 3/6
    assert ("Items by class: a 3, b 2, c 1. Chance: balanced accuracy 0.333 (1 / classes), AUROC 0.5, "
            "accuracy 0.500 (the largest class's share).") in md
    rows = {r["metric"]: r for r in results_table([s])}
    assert [rows[k]["chance"] for k in ("balanced_accuracy", "macro_f1", "accuracy", "auroc")] == [
        0.3333, "", 0.5, 0.5]
    assert rows["auroc"]["class_counts"] == "a 3, b 2, c 1"


def test_benchmark_table_shows_class_counts_and_chance(tmp_path):
    s = _summary(tmp_path)
    task = SimpleNamespace(name="cells", data="cells.csv", label="label", eval="probe", folds=2, seeds=[0],
                           split_column=None)
    run = SimpleNamespace(summaries=[s], weights_hash="h", seen=None, record="", loc=None)
    tr = SimpleNamespace(task=task, runs={"handcrafted": run}, groups_from=None, duplicates=None,
                         folds_used=2, n_items=6)
    rows = result_rows([tr])
    assert rows[0]["class_counts"] == "a 3, b 2, c 1"
    assert (rows[0]["balanced_accuracy_chance"], rows[0]["auroc_chance"]) == (0.3333, 0.5)
    cfg = SimpleNamespace(metric="balanced_accuracy", alpha=0.05)
    write_markdown(tmp_path / "results.md", [tr], rows, [], cfg, {})
    md = (tmp_path / "results.md").read_text()
    assert "| balanced accuracy [95% CI] | chance | sd over folds | macro-F1 | AUROC (chance 0.5) |" in md
    assert "| cells | handcrafted | linear | 1.000 [1.000, 1.000] | 0.333 | 0.000 |" in md
    assert "6 items (a 3, b 2, c 1), probe" in md


def test_probe_help_names_the_interval_it_computes():
    out = " ".join(CliRunner().invoke(app, ["probe", "--help"], terminal_width=200).output.split())
    assert "bootstrap CIs" not in out and "95% CIs (corrected resampled t)" in out
