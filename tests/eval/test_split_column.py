"""A split column is read by an explicit vocabulary (never a silent drop), a fixed split is trained once per
seed, folds are said not to apply, and its interval is the item bootstrap of the test items (never nan)."""

import csv
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.splits import ProtocolError, make_splits, split_parts

runner = CliRunner()


def plain(s):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", s).split())


def test_vocabulary_by_hand():
    assert split_parts([" Training", "test", "VAL", "testing", "valid", "validation", "train"]).tolist() == [
        "train", "test", "train", "test", "train", "train", "train"]
    with pytest.raises(ProtocolError, match=r"'holdout' \(2\), 'tst' \(1\)"):
        split_parts(["train", "holdout", "tst", "holdout"])


def test_fixed_split_repeats_for_each_seed_and_says_folds_do_not_apply():
    y = np.array([0, 1] * 5)
    said = []
    sp = make_splits(y, 5, (0, 1, 2), fixed=np.array(["training"] * 6 + ["testing"] * 4), warn=said.append)
    assert [s.seed for s in sp] == [0, 1, 2] and all(s.test.tolist() == [6, 7, 8, 9] for s in sp)
    assert "folds do not apply" in said[0] and "3 seed(s)" in said[0]


def _store(tmp_path, splits):
    rng = np.random.default_rng(0)
    rows = []
    for i, part in enumerate(splits):
        label = "ab"[i % 2]
        colour = np.array((215, 150, 170) if label == "a" else (120, 160, 190))
        tex = np.kron(rng.uniform(0.6, 1.0, (4, 4)), np.ones((8, 8)))[..., None]
        Image.fromarray((tex * colour).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": label, "split": part})
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = runner.invoke(app, ["extract", "--encoder", "handcrafted", "--input", str(tmp_path / "m.csv"),
                            "--mode", "image", "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    return tmp_path / "f"


def test_probe_on_a_fixed_split_with_other_words_and_seeds(tmp_path):
    store = _store(tmp_path, ["training"] * 28 + ["testing"] * 12)
    r = runner.invoke(app, ["probe", "--features", str(store), "--label", "label", "--out",
                            str(tmp_path / "p"), "--split-column", "split", "--seeds", "0,1",
                            "--methods", "linear"])
    assert r.exit_code == 0, r.output
    assert "folds do not apply" in plain(r.output) and "nan" not in r.stdout
    row = next(r for r in csv.DictReader(open(tmp_path / "p" / "results.csv"))
               if r["metric"] == "balanced_accuracy")
    assert row["n_splits"] == "2" and row["n_items"] == "12"  # every test item scored, both seeds trained
    assert float(row["ci95_low"]) <= float(row["mean"]) <= float(row["ci95_high"]) <= 1.0


def test_unknown_split_values_are_refused_with_the_values_found(tmp_path):
    store = _store(tmp_path, ["train"] * 27 + ["holdout"] * 11 + ["test"] * 2)
    r = runner.invoke(app, ["probe", "--features", str(store), "--label", "label", "--out",
                            str(tmp_path / "p"), "--split-column", "split", "--methods", "linear"])
    assert (r.exit_code == 2
            and "split column values not understood: 'holdout' (11)" in plain(r.output)), r.output


def test_bounded_interval_is_clipped_and_the_raw_one_kept():
    from cytofm.eval.cross_validation import bounded_interval

    assert (bounded_interval([-0.35, 1.85], (0.0, 1.0))
            == {"ci95": [0.0, 1.0], "ci95_unclipped": [-0.35, 1.85]})
    assert bounded_interval([0.2, 0.4], (0.0, 1.0))["ci95"] == [0.2, 0.4]
