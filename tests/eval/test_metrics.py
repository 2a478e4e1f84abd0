"""AUROC against numbers counted by hand: orientation of the binary case and one-vs-rest macro."""

import numpy as np
import pytest

from cytofm.eval.metrics import classification_metrics


def test_binary_auroc_orientation():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])  # 3 of the 4 (positive, negative) pairs ordered right
    proba = np.stack([1 - p1, p1], 1)
    assert classification_metrics(y, proba, 2)["auroc"] == pytest.approx(0.75)
    # the score of class 1 ranks class 1: swapping the columns turns 0.75 into 0.25, not 0.75
    assert classification_metrics(y, proba[:, ::-1], 2)["auroc"] == pytest.approx(0.25)


def test_multiclass_auroc_one_vs_rest_macro():
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6],
                      [0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.2, 0.2, 0.6]])
    # class 0: 7 of 8 pairs; class 1: 6.5 of 8 (one tie); class 2: 8 of 8
    assert classification_metrics(y, proba, 3)["auroc"] == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)


def test_auroc_of_a_fold_missing_a_class_uses_the_classes_present():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.3, 0.2, 0.5]])
    # classes 0 and 1 only: renormalised p(1 | 0 or 1) = 1/6, 3/5, 6/7, 2/5
    # -> pairs (6/7 > all, 2/5 > 1/6) = 3 of 4
    assert classification_metrics(y, proba, 3)["auroc"] == pytest.approx(0.75)


def test_fast_metrics_equal_scikit_learn_on_random_cases():
    """The bootstrap's numpy metrics against classification_metrics: binary, multi-class, classes missing
    from y (and predicted anyway), tied scores."""
    import warnings

    from cytofm.eval.metrics import classification_metrics, fast_metrics

    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(60):
        c = int(rng.integers(2, 8))
        n = int(rng.integers(5, 80))
        present = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
        y = rng.choice(present, n)
        p = rng.dirichlet(np.ones(c), n)
        if trial % 3 == 0:
            p = np.round(p, 1) + 1e-9  # ties
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = classification_metrics(y, p, c)
        got = fast_metrics(y, p, c)
        for k in want:
            assert (np.isnan(want[k]) and np.isnan(got[k])) or abs(want[k] - got[k]) < 1e-9, \
                (trial, k, want, got)
        checked += 1
    assert checked == 60


def test_weighted_metrics_equal_the_metrics_of_the_resample_they_stand_for():
    """Row b of item counts w is the data with item i repeated w[b, i] times: every metric equals
    classification_metrics of that expanded resample (binary, multi-class, a class absent in some rows,
    ties)."""
    import warnings

    from cytofm.eval.metrics import classification_metrics, weighted_metrics

    rng = np.random.default_rng(1)
    for trial in range(30):
        c, n = int(rng.integers(2, 6)), int(rng.integers(6, 40))
        y = rng.integers(0, c, n)
        p = rng.dirichlet(np.ones(c), n)
        if trial % 2:
            p = np.round(p, 1) + 1e-9
        w = rng.integers(0, 3, (5, n))
        got = weighted_metrics(y, p, c, w)
        for b in range(5):
            idx = np.repeat(np.arange(n), w[b])
            if len(np.unique(y[idx])) < 2:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = classification_metrics(y[idx], p[idx], c)
            for k in want:
                assert abs(want[k] - got[k][b]) < 1e-9, (trial, b, k, want[k], got[k][b])


def test_the_bootstrap_interval_of_a_perfect_and_a_constant_classifier():
    """Every resample of perfectly separated items scores 1 (interval [1, 1]); a constant score has AUROC
    0.5 in every resample."""
    from cytofm.eval.metrics import bootstrap_ci

    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] * 3)
    assert bootstrap_ci(y, perfect, 2, n_boot=100)["auroc"] == (1.0, 1.0)
    assert bootstrap_ci(y, np.full((6, 2), 0.5), 2, n_boot=100)["auroc"] == (0.5, 0.5)
