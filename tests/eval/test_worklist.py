"""The worklist's arithmetic against values worked out by hand: ranks, quintiles, the decision at the
operating point, the seeded QC draw, and cases that could not be analysed (listed, never negative)."""

from __future__ import annotations

import numpy as np
import pytest

from cytofm.eval.operating_point import out_of_fold_operating_point
from cytofm.eval.worklist import CaseScore, build_worklist, qc_draw, quintiles, worklist_summary


def test_quintiles_by_rank_from_the_lowest():
    # ranks from the lowest 0..9 -> 1 + floor(5 r / 10): 1 1 2 2 3 3 4 4 5 5
    s = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    assert quintiles(s).tolist() == [5, 1, 3, 2, 4, 2, 5, 3, 4, 1]
    # ties share the quintile of their lowest rank: [0.5] x 4 take rank 1 -> 1 + 5 // 5 = 2
    assert quintiles(np.array([0.0, 0.5, 0.5, 0.5, 0.5])).tolist() == [1, 2, 2, 2, 2]
    assert quintiles(np.array([0.3])).tolist() == [1]
    assert quintiles(np.zeros(0)).tolist() == []


def test_the_qc_draw_is_seeded_and_rounds_up():
    cases = [f"c{k}" for k in range(10)]
    # ceil(0.25 * 10) = 3 of the sorted cases, default_rng(0).choice(10, 3) = [5, 9, 6]
    assert qc_draw(cases, 0.25, 0) == ["c5", "c6", "c9"]
    assert qc_draw(cases[::-1], 0.25, 0) == ["c5", "c6", "c9"]  # the order given does not matter
    assert qc_draw(["a", "b"], 0.1, 0) == ["b"]  # ceil(0.2) = 1; default_rng(0).choice(2, 1) = [1]
    assert qc_draw(cases, 0.0, 0) == [] and qc_draw([], 0.5, 0) == []
    assert qc_draw(cases, 0.25, 1) != qc_draw(cases, 0.25, 0)
    with pytest.raises(ValueError, match="QC share"):
        qc_draw(cases, 1.5, 0)


def test_a_planted_worklist_is_ordered_decided_and_drawn_as_worked_out_by_hand():
    scores = [CaseScore("a", 0.10, 0.01), CaseScore("b", 0.80, 0.05), CaseScore("c", 0.30, 0.02),
              CaseScore("d", not_analysed="no um/px: x.png"), CaseScore("e", 0.05, 0.0),
              CaseScore("f", 0.02, 0.0, force_review="adequacy unsatisfactory: 3 cells"),
              CaseScore("g", 0.30, 0.03)]
    rows = build_worklist(scores, threshold=0.3, qc_share=0.5, seed=7)
    assert [r["case"] for r in rows] == ["b", "c", "g", "a", "e", "f", "d"]  # ties (0.30) by name
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 6, ""]
    # six analysed, ranks from the lowest f0 e1 a2 c3 g3 b5 -> quintiles 1 + floor(5 r / 6)
    assert [r["quintile"] for r in rows] == [5, 3, 3, 2, 1, 1, ""]
    # at or above 0.3 review; f is below but unsatisfactory: review whatever its score
    assert [r["decision"] for r in rows] == ["review", "review", "review", "no further review",
                                            "no further review", "review", "could not analyse"]
    # the no-further-review cases sorted [a, e]; ceil(0.5 * 2) = 1; default_rng(7).choice(2, 1) = [1] -> e
    drawn = [r["case"] for r in rows if r["qc_rescreen"]]
    assert drawn == qc_draw(["a", "e"], 0.5, 7) == ["e"]
    assert rows[-1]["reason"] == "no um/px: x.png" and rows[-1]["score"] == ""
    assert worklist_summary(rows) == {"review": 4, "no further review": 2, "could not analyse": 1,
                                      "qc_rescreen": 1}


def test_a_case_that_could_not_be_analysed_is_never_negative_and_never_dropped():
    rows = build_worklist([CaseScore("x", not_analysed="mostly out of focus"), CaseScore("y", 0.0)], 0.5)
    assert {r["case"]: r["decision"] for r in rows} == {"y": "no further review", "x": "could not analyse"}
    rows = build_worklist([CaseScore("y", 0.9)], None)  # no operating point: review
    assert rows[0]["decision"] == "review"


def test_the_out_of_fold_operating_point_keeps_the_sensitivity_on_separable_cases():
    positive = np.array([True] * 20 + [False] * 80)
    score = np.where(positive, 0.8, 0.2)  # every fold's threshold is 0.8
    op = out_of_fold_operating_point(positive, score, 0.95, folds=5, seed=0)
    assert op["fold_thresholds"] == [0.8] * 5
    assert op["sensitivity"] == 1.0 and op["specificity"] == 1.0
    assert op["no_further_review_share"] == 0.8  # every negative, no positive
    # positives 1..20 (/20): on every case the threshold is the ceil(0.95 * 20) = 19th highest, 2/20; out of
    # fold a fold's lowest positive falls below the others' 19th highest only where it holds the case 1/20
    score = np.concatenate([np.arange(1, 21) / 20, np.zeros(80)])
    op = out_of_fold_operating_point(positive, score, 0.95, folds=5, seed=0)
    assert op["threshold"] == 0.1 and op["specificity"] == 1.0
    assert op["sensitivity"] == 0.95  # the case 1/20 is below every fold's threshold (>= 0.1), the others not
    with pytest.raises(ValueError, match="at least 2 positive"):
        out_of_fold_operating_point(np.array([True, False, False]), np.array([1.0, 0.0, 0.1]))
