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
    # classes 0 and 1 only: renormalised p(1 | 0 or 1) = 1/6, 3/5, 6/7, 2/5 -> pairs (6/7 > all, 2/5 > 1/6) = 3 of 4
    assert classification_metrics(y, proba, 3)["auroc"] == pytest.approx(0.75)
