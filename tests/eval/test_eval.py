"""Metrics, protocols and the probe / mil commands on a synthetic feature store."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.metrics import bootstrap_ci, classification_metrics, paired_difference
from cytofm.eval.splits import ProtocolError, make_splits
from cytofm.features.store import write_item
from cytofm.utils.io import write_csv

runner = CliRunner()


def test_metrics_hand_computed():
    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.eye(3)[[0, 1, 1, 1, 0, 2]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, p, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    f1 = [0.5, 2 / 3, 1.0]  # class 0: P = R = 1/2; class 1: P = R = 2/3; class 2: perfect
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    # one-vs-rest AUROC by hand (ties count a half): class 0 5/8, class 1 6/9, class 2 separated, 1
    assert m["auroc"] == pytest.approx((5 / 8 + 6 / 9 + 1) / 3)


def test_bootstrap_ci_brackets_the_estimate_and_paired_difference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.stack([1 - y, y], 1) * 0.7 + 0.15
    noisy = rng.dirichlet([1, 1], 200)
    ci = bootstrap_ci(y, good, 2, n_boot=200)
    assert ci["accuracy"][0] <= classification_metrics(y, good, 2)["accuracy"] <= ci["accuracy"][1]
    d, (lo, hi) = paired_difference(y, good, noisy, 2, n_boot=200)
    assert d > 0 and lo > 0  # A beats B: the CI excludes 0
    d, (lo, hi) = paired_difference(y, good, good, 2, n_boot=50)
    assert d == 0 and lo == hi == 0


def test_grouped_splits_never_leak_a_specimen():
    y = np.array([0, 1] * 20)
    groups = np.repeat(np.arange(10), 4)
    for sp in make_splits(y, 5, (0, 1), groups):
        assert not set(groups[sp.train]) & set(groups[sp.test])
        assert set(sp.train) | set(sp.test) == set(range(40))


def test_rare_class_lowers_folds_with_warning_and_single_class_fails():
    y = np.array([0] * 10 + [1] * 3)
    warned = []
    splits = make_splits(y, 5, (0,), warn=warned.append)
    assert len(splits) == 3 and "using 3 folds" in warned[0]
    with pytest.raises(ProtocolError, match="only one class"):
        make_splits(np.zeros(5, int), 5)
    with pytest.raises(ProtocolError, match="needs at least 2"):
        make_splits(np.array([0, 0, 0, 1]), 5)


def test_fixed_split_column():
    (sp,) = make_splits(np.array([0, 1, 0, 1]), seeds=(0,),
                        fixed=np.array(["train", "train", "test", "Test"]), warn=print)
    assert sp.train.tolist() == [0, 1] and sp.test.tolist() == [2, 3]


def make_store(root, n=40, d=8, bag=False, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["benign", "malignant"][i % 2]
        k = int(rng.integers(3, 8)) if bag else 1
        f = rng.normal(0, 1, (k, d)).astype(np.float32)
        if label == "malignant":
            f[int(rng.integers(k))] += 4.0 if bag else 1.5  # one instance (or the image) carries the signal
        write_item(root / "features" / f"i{i}.h5", f, np.zeros((k, 2)), {"encoder": "test"})
        rows.append({"id": f"i{i}", "path": f"/x/{i}.png", "h5": f"features/i{i}.h5", "n_instances": k,
                     "label": label if i != n - 1 else "", "patient": f"p{i // 2}"})
    write_csv(root / "manifest.csv", rows)
    return root


def test_probe_cli_writes_results_with_cis(tmp_path):
    store = make_store(tmp_path / "s")
    r = runner.invoke(app, ["probe", "--features", str(store), "--label", "label", "--out",
                            str(tmp_path / "o"), "--seeds", "0,1", "--methods", "linear,knn,fewshot",
                            "--group-column", "patient"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "o" / "summary_linear.json").read_text())
    assert s["n_items"] == 39 and s["n_splits"] == 10
    assert s["balanced_accuracy"]["mean"] > 0.7
    lo, hi = s["balanced_accuracy"]["ci95"]
    assert lo <= hi
    assert (tmp_path / "o" / "confusion_knn.png").stat().st_size > 1000
    assert "fewshot5" in (tmp_path / "o" / "results.md").read_text()
    preds = (tmp_path / "o" / "predictions_linear.csv").read_text().splitlines()
    assert len(preds) == 1 + 39 * 2


def test_mil_cli_learns_planted_bags_and_saves_attention(tmp_path):
    store = make_store(tmp_path / "s", n=60, bag=True)
    r = runner.invoke(app, ["mil", "--features", str(store), "--label", "label", "--out", str(tmp_path / "o"),
                            "--seeds", "0", "--folds", "3", "--epochs", "30", "--lr", "0.002"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "o" / "summary_abmil.json").read_text())
    assert s["balanced_accuracy"]["mean"] > 0.8
    att = np.load(tmp_path / "o" / "attention_0.npz")
    assert len(att.files) == 59 and all(abs(att[k].sum() - 1) < 1e-5 for k in att.files)


def test_bad_stores_are_refused_clearly(tmp_path):
    store = make_store(tmp_path / "s", n=10)
    write_item(store / "features" / "i3.h5", np.zeros((1, 5), np.float32), np.zeros((1, 2)), {})
    r = runner.invoke(app, ["probe", "--features", str(store), "--label", "label", "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "features of size 5" in r.output
    r = runner.invoke(app, ["probe", "--features", str(store), "--label", "nope", "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "no column 'nope'" in r.output


def test_benchmark_two_encoders_one_table_with_paired_difference(tmp_path):
    import csv

    from PIL import Image


    root = tmp_path / "cells"
    rng = np.random.default_rng(0)
    for cls, color in (("pink", (215, 150, 170)), ("blue", (120, 160, 190))):
        (root / cls).mkdir(parents=True)
        for i in range(8):  # distinct textures (no near-duplicates), class told by colour
            tex = np.kron(rng.uniform(0.6, 1.0, (5, 5)), np.ones((8, 8)))[..., None]
            Image.fromarray((tex * np.array(color)).astype(np.uint8)).save(root / cls / f"{i}.png")
    (tmp_path / "b.yaml").write_text(
        "encoders: [random:vit_tiny_patch16_224, handcrafted]\n"
        "tasks:\n  - {name: colour, data: cells, label: label, mode: image, eval: probe, methods: [knn], "
        "folds: 4, seeds: [0]}\n")
    r = runner.invoke(app, ["benchmark", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "o" / "results.csv")))
    assert [x["encoder"] for x in rows] == ["random:vit_tiny_patch16_224", "handcrafted"]
    (c,) = list(csv.DictReader(open(tmp_path / "o" / "comparisons.csv")))
    assert (c["a"], c["b"]) == ("handcrafted", "random:vit_tiny_patch16_224")
    assert float(c["diff"]) == pytest.approx(float(c["mean_a"]) - float(c["mean_b"]), abs=2e-4)
    assert "In words:" in (tmp_path / "o" / "results.md").read_text()
    assert float(rows[1]["balanced_accuracy_mean"]) == 1.0  # colour separates the classes perfectly
    assert (tmp_path / "o" / "results.png").stat().st_size > 1000
    # a second run reuses the cached extraction
    runner.invoke(app, ["benchmark", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "o")])
    (data_dir,) = list((tmp_path / "o" / "cache").iterdir())  # one folder per (data, mode, preparation)
    assert len(list(data_dir.iterdir())) == 2  # one store per encoder
