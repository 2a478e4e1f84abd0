import numpy as np
import pytest

from cytofm.eval.operating_point import threshold_for_sensitivity


def test_threshold_keeps_the_target_sensitivity_by_hand():
    # positives 0.9 0.8 0.6 0.3; negatives 0.7 0.5 0.2 0.1 0.05
    pos = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.2, 0.1, 0.05])
    op = threshold_for_sensitivity(pos, score, 0.75)  # 3 of 4 positives: t = 0.6
    assert op["threshold"] == 0.6 and op["sensitivity"] == 0.75 and op["specificity"] == pytest.approx(4 / 5)
    op = threshold_for_sensitivity(pos, score, 0.95)  # all 4: t = 0.3, negatives below it 0.2 0.1 0.05
    assert op["threshold"] == 0.3 and op["sensitivity"] == 1.0 and op["specificity"] == pytest.approx(3 / 5)
    assert threshold_for_sensitivity(pos, score, 0.5)["threshold"] == 0.8


def test_operating_point_refuses_one_class_and_a_bad_target():
    with pytest.raises(ValueError, match="positive and negative"):
        threshold_for_sensitivity(np.ones(3, bool), np.ones(3))
    with pytest.raises(ValueError, match="target sensitivity"):
        threshold_for_sensitivity(np.array([1, 0], bool), np.ones(2), 0)
