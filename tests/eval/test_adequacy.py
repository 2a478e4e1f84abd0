"""Adequacy from the detector's cells, against shares and verdicts worked out by hand."""

from __future__ import annotations

import numpy as np

from cytofm.eval.adequacy import AdequacyConfig, assess


def _cells(n, area=10.0, focus=0.5, conf=0.9, clump=False):
    return (np.full(n, area), np.full(n, focus), np.full(n, conf), np.full(n, clump))


def _join(*parts):
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def test_counts_shares_and_verdicts():
    cfg = AdequacyConfig()  # field: < 10 unsatisfactory, < 20 limited
    a = assess(*_cells(25), cfg)
    assert (a.n_cells, a.n_well_segmented, a.verdict, a.reasons) == (25, 25, "satisfactory", [])
    a = assess(*_cells(15), cfg)
    assert a.verdict == "limited" and a.reasons == ["15 well-segmented cells (< 20)"]
    # 20 sharp cells of area 10, 5 blurred of area 40: 200 / 400 = 50% of the area out of focus
    a = assess(*_join(_cells(20), _cells(5, area=40, focus=0.1)), cfg)
    assert a.out_of_focus_share == 0.5 and a.n_well_segmented == 20 and a.verdict == "limited"
    assert a.reasons == ["50% of the cell area out of focus (> 25%)"]
    # a clump of area 800 beside 20 cells of 10: 80% obscured -> unsatisfactory (> 75%)
    a = assess(*_join(_cells(20), _cells(1, area=800, conf=0.0, clump=True)), cfg)
    assert a.obscured_share == 0.8 and a.verdict == "unsatisfactory"
    # poorly outlined cells are counted but not as well segmented
    a = assess(*_join(_cells(12), _cells(10, conf=0.2)), cfg)
    assert (a.n_cells, a.n_well_segmented, a.verdict) == (22, 12, "limited")


def test_mostly_out_of_focus_or_no_cells_cannot_be_analysed():
    cfg = AdequacyConfig()
    a = assess(*_join(_cells(2), _cells(30, focus=0.05)), cfg)
    assert a.not_analysed == "mostly out of focus (94% of the cell area)" and a.verdict == ""
    a = assess(*_cells(0), cfg)
    assert a.not_analysed == "no cells found" and a.n_cells == 0


def test_the_preparation_sets_the_counts_and_a_setting_overrides_them():
    assert AdequacyConfig(preparation="pap").counts() == (5000, 8000)
    assert AdequacyConfig(preparation="smear").counts() == (100, 200)
    assert AdequacyConfig(preparation="pap", min_cells=3000).counts() == (3000, 8000)
    # a missing focus (NaN: cells written before focus existed) counts as in focus
    nan = np.full(30, np.nan)
    a = assess(np.full(30, 5.0), nan, nan, np.zeros(30, bool), AdequacyConfig())
    assert a.out_of_focus_share == 0.0 and a.n_well_segmented == 30
