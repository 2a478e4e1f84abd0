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


def test_the_positive_class_chosen_screens_for_that_class():
    """With benign as the positive class the threshold is on p(benign) over the benign items: benign scores
    0.95 0.7 0.4 (p = 1 - p_malignant), so 0.95 sensitivity keeps all three at t = 0.4."""
    from cytofm.eval.saved_model import operating_point_record

    y = np.array([0, 0, 0, 1, 1])  # benign, benign, benign, malignant, malignant
    p_mal = np.array([0.05, 0.3, 0.6, 0.9, 0.55])
    summary = {"_oof": {"y": y, "proba": np.stack([1 - p_mal, p_mal], 1)}}
    op = operating_point_record(["benign", "malignant"], summary, 0.95, "benign")
    assert op["positive_class"] == "benign" and op["threshold"] == pytest.approx(0.4)
    assert op["specificity"] == pytest.approx(0.5)  # malignant items' p(benign) 0.1 and 0.45: one below
    default = operating_point_record(["benign", "malignant"], summary, 0.95, None)
    assert default["positive_class"] == "malignant" and default["threshold"] == pytest.approx(0.55)
    assert default["specificity"] == pytest.approx(2 / 3)  # benign p(malignant) 0.05 0.3 below, 0.6 not
    with pytest.raises(ValueError, match="not a class of this task"):
        operating_point_record(["benign", "malignant"], summary, 0.95, "atypical")
