"""A screening model's operating point: the threshold on the positive class's probability that keeps the
sensitivity at a target on the out-of-fold predictions, and the specificity it had there. Written here
because scikit-learn's ``roc_curve`` gives the curve, not the one point a lab fixes before applying the
model to new cases."""

from __future__ import annotations

import math

import numpy as np


def threshold_for_sensitivity(positive: np.ndarray, score: np.ndarray, target: float = 0.95) -> dict:
    """The largest threshold ``t`` with sensitivity (share of positives with ``score >= t``) at least
    ``target``: the positives' scores sorted from high to low, ``t`` is the ``ceil(target * n_pos)``-th."""
    positive, score = np.asarray(positive, bool), np.asarray(score, float)
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], not {target}")
    pos, neg = np.sort(score[positive])[::-1], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("an operating point needs positive and negative items")
    k = max(1, math.ceil(target * len(pos) - 1e-9))
    t = float(pos[k - 1])
    return {"threshold": t, "target_sensitivity": target, "sensitivity": float((pos >= t).mean()),
            "specificity": float((neg < t).mean()), "n_positive": int(len(pos)), "n_negative": int(len(neg))}
