"""Claimed comparisons and their pairing: same items, same folds, difference of the means."""


import numpy as np
import pytest

from cytofm.eval.benchmark import evaluate_stores
from cytofm.eval.benchmark_report import comparison_rows
from cytofm.eval.compare import PairingError, claimed_pairs, paired_fold_difference
from cytofm.eval.config import BenchmarkConfig, TaskConfig
from cytofm.features.store import write_item
from cytofm.utils.io import write_csv


def test_default_claims_are_first_encoder_and_baselines():
    enc = ["random:vit_small_patch16_224", "handcrafted", "cytofm", "uni"]
    assert claimed_pairs(enc, ["random:*", "handcrafted"]) == [
        ("handcrafted", "random:vit_small_patch16_224"), ("cytofm", "random:vit_small_patch16_224"),
        ("uni", "random:vit_small_patch16_224"), ("cytofm", "handcrafted"), ("uni", "handcrafted")]
    assert claimed_pairs(enc, [], ["uni vs cytofm"]) == [("uni", "cytofm")]
    with pytest.raises(ValueError, match="A vs B"):
        claimed_pairs(enc, [], ["uni > cytofm"])


def test_pairing_refuses_folds_with_different_items():
    a = [{"seed": 0, "fold": 0, "test_ids": "x", "balanced_accuracy": 0.7}]
    b = [{"seed": 0, "fold": 0, "test_ids": "y", "balanced_accuracy": 0.6}]
    with pytest.raises(PairingError, match="different items"):
        paired_fold_difference(a, b, "balanced_accuracy", 0.25)


def _store(root, feats, y, order):
    rows = []
    for i in order:
        write_item(root / "features" / f"i{i:02d}.h5", feats[i][None], np.zeros((1, 2)), {"encoder": "t"})
        rows.append({"id": f"i{i:02d}", "path": f"/nowhere/{i}.png", "h5": f"features/i{i:02d}.h5",
                     "n_instances": 1, "label": ["benign", "malignant"][y[i]]})
    write_csv(root / "manifest.csv", rows)
    return root


def test_shuffled_manifest_pairs_item_by_item(tmp_path, monkeypatch):
    monkeypatch.setattr("cytofm.eval.cross_validation.confusion_png", lambda *a, **k: None)
    monkeypatch.setattr("cytofm.eval.cross_validation.bootstrap_ci", lambda *a, **k: {})
    rng = np.random.default_rng(0)
    n = 40
    y = np.arange(n) % 2
    feats = rng.normal(0, 1, (n, 6)).astype(np.float32)
    feats[:, 0] += 0.8 * y
    order = rng.permutation(n)
    stores = {"a": (_store(tmp_path / "a", feats, y, range(n)), "a", "h"),
              "b": (_store(tmp_path / "b", feats, y, order), "b", "h"),  # same items, manifest shuffled
              # features moved
              "c": (_store(tmp_path / "c", feats[rng.permutation(n)], y, range(n)), "c", "h")}
    task = TaskConfig(name="t", data="x", label="label", methods=["knn"], folds=4, seeds=[0, 1])
    tr = evaluate_stores(task, stores, tmp_path / "o", log=lambda m: None)
    fa, fb, fc = (tr.runs[s].summaries[0]["_folds"] for s in "abc")
    assert [r["balanced_accuracy"] for r in fa] == [r["balanced_accuracy"] for r in fb]
    comps = comparison_rows([tr], BenchmarkConfig(encoders=list(stores), tasks=[task], baselines=[]))
    ab, ac = comps[0], comps[1]
    assert (ab["a"], ab["b"], ab["diff"], ab["p"]) == ("b", "a", 0.0, 1.0)
    # a real difference: the mean of per-fold differences is the difference of the means
    mean = lambda f: np.mean([r["balanced_accuracy"] for r in f])  # noqa: E731
    assert ac["diff"] == pytest.approx(mean(fc) - mean(fa), abs=1e-4) and ac["diff"] != 0
    # Holm over 2 tests, the other p = 1
    assert ac["p_holm"] == pytest.approx(min(1.0, 2 * ac["p"]), rel=1e-3)
    assert ab["p_holm"] == 1.0
