"""The corrected resampled t interval, its runs x folds form and the Holm correction against known values
and simulations."""

import numpy as np
import pytest
from scipy import stats

from cytofm.eval.intervals import corrected_t_interval, holm, seed_fold_interval


def test_corrected_t_by_hand():
    x = np.array([0.6, 0.7, 0.8, 0.7])  # mean 0.7, s^2 = 0.02/3
    iv = corrected_t_interval(x, 0.25)
    se = np.sqrt((1 / 4 + 0.25) * 0.02 / 3)
    q = stats.t.ppf(0.975, 3)
    assert iv.mean == pytest.approx(0.7) and iv.se == pytest.approx(se)
    assert (iv.low, iv.high) == pytest.approx((0.7 - q * se, 0.7 + q * se))
    assert iv.p == pytest.approx(2 * stats.t.sf(0.7 / se, 3))
    assert corrected_t_interval([0.5, np.nan, 0.7], 0.25).n == 2  # NaN folds are left out
    one = corrected_t_interval([0.5], 0.25)
    assert one.mean == 0.5 and np.isnan(one.low)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adj = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adj[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adj[4])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def _coverage(correct: bool, draws=1000, k=5, r=3, mu=0.7, sigma=0.05, seed=0) -> float:
    """Fold scores of k-fold x r repeats as an equicorrelated normal with rho = n_test / n = 1/k, the case
    in which Nadeau & Bengio's corrected variance is exact: the 95% interval must cover mu 95% of the time."""
    rng = np.random.default_rng(seed)
    rho, j = 1 / k, k * r
    hit = 0
    for _ in range(draws):
        x = mu + sigma * (np.sqrt(rho) * rng.normal() + np.sqrt(1 - rho) * rng.normal(size=j))
        iv = corrected_t_interval(x, 1 / (k - 1) if correct else 0.0)
        hit += iv.low <= mu <= iv.high
    return hit / draws


def test_interval_covers_95_percent_on_a_case_with_known_variance():
    assert 0.93 <= _coverage(True) <= 0.97
    # the uncorrected t interval (fold scores treated as independent) covers far less: the test can fail
    assert _coverage(False) < 0.8


def test_seed_fold_interval_by_hand():
    x = np.array([[0.1, 0.3, 0.2], [0.3, 0.5, 0.4]])  # run means 0.2, 0.4; fold means 0.2, 0.4, 0.3
    iv = seed_fold_interval(x, 0.25)
    se = np.sqrt(0.02 / 2 + (1 / 3 + 0.25) * 0.01)
    q = stats.t.ppf(0.975, 1)
    assert iv.mean == pytest.approx(0.3) and iv.se == pytest.approx(se) and iv.n == 2
    assert (iv.low, iv.high) == pytest.approx((0.3 - q * se, 0.3 + q * se))
    assert iv.p == pytest.approx(2 * stats.t.sf(0.3 / se, 1))
    one = seed_fold_interval(x[:1], 0.25)  # one run: the corrected t interval of its folds
    assert one.se == pytest.approx(corrected_t_interval(x[0], 0.25).se)
    with pytest.raises(ValueError, match="runs, folds"):
        seed_fold_interval(x[0], 0.25)


def _seed_coverage(with_runs: bool, draws=1000, s=4, k=5, r=3, mu=0.02, sd_run=0.04, sd_fold=0.02,
                   seed=0) -> float:
    """Runs that differ by a training effect (sd_run) evaluated on the same folds (equicorrelated fold
    part shared by every run, as in _coverage, plus each run's own fold noise)."""
    rng = np.random.default_rng(seed)
    rho, j = 1 / k, k * r
    hit = 0
    for _ in range(draws):
        shared = sd_fold * (np.sqrt(rho) * rng.normal() + np.sqrt(1 - rho) * rng.normal(size=j))
        x = mu + sd_run * rng.normal(size=(s, 1)) + shared + 0.5 * sd_fold * rng.normal(size=(s, j))
        iv = seed_fold_interval(x, 1 / (k - 1)) if with_runs else corrected_t_interval(x.mean(0), 1 / (k - 1))
        hit += iv.low <= mu <= iv.high
    return hit / draws


def test_seed_fold_interval_covers_training_variation():
    assert _seed_coverage(True) >= 0.94  # conservative (wide) by construction
    # the folds-only interval of the run-averaged scores ignores training variation and covers far less
    assert _seed_coverage(False) < 0.8
