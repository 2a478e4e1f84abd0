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


def out_of_fold_operating_point(positive: np.ndarray, score: np.ndarray, target: float = 0.95, folds: int = 5,
                                seed: int = 0) -> dict:
    """The operating point as a lab would meet it on new cases: stratified ``folds``, each fold's cases
    decided by the threshold :func:`threshold_for_sensitivity` chooses on the other folds, then pooled: the
    sensitivity and specificity out of fold, the share of all cases under "no further review" (the workload
    saved), each fold's threshold, and the threshold chosen on every case (what a later batch is given).
    ``score`` must itself be out of fold where it came from a fitted model."""
    from sklearn.model_selection import StratifiedKFold

    positive, score = np.asarray(positive, bool), np.asarray(score, float)
    n_pos = int(positive.sum())
    folds = min(folds, n_pos, len(positive) - n_pos)
    if folds < 2:
        raise ValueError("an out-of-fold operating point needs at least 2 positive and 2 negative cases")
    below = np.zeros(len(score), bool)
    thresholds = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(score, positive):
        t = threshold_for_sensitivity(positive[train], score[train], target)["threshold"]
        thresholds.append(t)
        below[test] = score[test] < t
    return {"target_sensitivity": target, "sensitivity": float((~below[positive]).mean()),
            "specificity": float(below[~positive].mean()), "no_further_review_share": float(below.mean()),
            "n_positive": n_pos, "n_negative": int(len(positive) - n_pos), "folds": folds, "seed": seed,
            "fold_thresholds": thresholds,
            "threshold": threshold_for_sensitivity(positive, score, target)["threshold"]}
