"""Intervals for cross-validated estimates and the multiplicity correction of a table of comparisons.

The fold scores of repeated k-fold share most of their training data, so their sd understates the
uncertainty of their mean. Nadeau & Bengio (2003, "Inference for the generalization error") correct the
variance of the mean of J scores to (1/J + n_test/n_train) s^2 with a t distribution of J-1 degrees of
freedom (Bouckaert & Frank 2004 for repeated k-fold). The same interval applies to the mean of paired
per-fold differences, whose mean is exactly the difference of the two means.

Pretrained encoders add training variation: two runs of one recipe that differ only in their seed give
different features. :func:`seed_fold_interval` takes the fold scores of several runs per recipe, all on
the same folds, so that "A beats B" accounts for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    se: float
    p: float
    """Two-sided p-value of "the mean is 0" (meaningful for differences)."""
    n: int


def corrected_t_interval(scores, test_train_ratio: float, alpha: float = 0.05) -> Interval:
    """Corrected resampled t interval of the mean of per-fold scores (NaN scores are left out).

    ``test_train_ratio`` is n_test / n_train of one fold (1/(k-1) for k-fold). With one score there is no
    interval (NaN bounds).
    """
    x = np.asarray(scores, dtype=float)
    x = x[~np.isnan(x)]
    j = len(x)
    if j == 0:
        return Interval(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)
    m = float(x.mean())
    if j < 2:
        return Interval(m, float("nan"), float("nan"), float("nan"), float("nan"), 1)
    se = float(np.sqrt((1.0 / j + test_train_ratio) * x.var(ddof=1)))
    q = float(stats.t.ppf(1 - alpha / 2, j - 1))
    if se == 0:
        p = 1.0 if m == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(m) / se, j - 1))
    return Interval(m, m - q * se, m + q * se, se, p, j)


def seed_fold_interval(scores, test_train_ratio: float, alpha: float = 0.05) -> Interval:
    """Interval of the mean of an (S runs, J folds) table of scores (or paired differences) in which each
    row is one training run (seed) and every row uses the same J folds.

    Model: score[s, j] = mu + a_s (training) + b_j (the folds, shared by every run) + noise. The variance
    of the grand mean is estimated as var(run means) / S + (1/J + n_test/n_train) * var(fold means), the
    second term Nadeau & Bengio's correction of the fold part; each term also carries some of the noise,
    so the estimate errs on the wide side. Degrees of freedom S - 1 (the training term is the one that a
    few seeds estimate poorly), which is conservative when training variation is small. With one run it is
    :func:`corrected_t_interval` of that run's folds (no training variation: say so where it is reported).
    Written here because no statistics library offers this two-way (runs x shared folds) correction.
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"scores must be a (runs, folds) table, not shape {x.shape}")
    s, j = x.shape
    if s == 1:
        return corrected_t_interval(x[0], test_train_ratio, alpha)
    m = float(x.mean())
    se = float(np.sqrt(x.mean(axis=1).var(ddof=1) / s
                       + (1.0 / j + test_train_ratio) * x.mean(axis=0).var(ddof=1)))
    q = float(stats.t.ppf(1 - alpha / 2, s - 1))
    p = (1.0 if m == 0 else 0.0) if se == 0 else float(2 * stats.t.sf(abs(m) / se, s - 1))
    return Interval(m, m - q * se, m + q * se, se, p, s)


def proportion_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """``k`` of ``n`` as (proportion, low, high) with the Wilson score interval, which stays inside [0, 1]
    and keeps its coverage near 0 and 1 where screening sensitivities lie (NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(1 - alpha, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (NaN stays NaN and does not count toward the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
