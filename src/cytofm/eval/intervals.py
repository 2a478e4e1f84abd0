"""Intervals for cross-validated estimates and the multiplicity correction of a table of comparisons.

The fold scores of repeated k-fold share most of their training data, so their sd understates the
uncertainty of their mean. Nadeau & Bengio (2003, "Inference for the generalization error") correct the
variance of the mean of J scores to (1/J + n_test/n_train) s^2 with a t distribution of J-1 degrees of
freedom (Bouckaert & Frank 2004 for repeated k-fold). The same interval applies to the mean of paired
per-fold differences, whose mean is exactly the difference of the two means.
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
