"""Probes on frozen features: linear (regularisation by inner CV), cosine kNN, few-shot."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

C_GRID = (1e-3, 1e-2, 1e-1, 1.0)
"""Inverse L2 strengths on standardised features. Larger C fits hundreds of dimensions to a few hundred
cells (separable: the solver runs to its limit and the probe overfits), so the grid stops at 1."""
TOL, MAX_ITER = 1e-3, 500


def linear_probe(xtr, ytr, xte, n_classes: int, seed: int = 0, groups=None,
                 fitted: list | None = None) -> np.ndarray:
    """Logistic regression on standardised features; C chosen by a 3-fold inner CV on the training fold
    (grouped by ``groups`` when given, so the choice of C is not made on near-copies of training items).
    ``fitted``: the fitted pipeline is appended to it (to be saved)."""
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, tol=TOL))
    classes, counts = np.unique(ytr, return_counts=True)
    if groups is not None:
        counts = np.array([len(np.unique(groups[ytr == c])) for c in classes])
    inner = int(min(3, counts.min()))
    fit_kw = {}
    if inner >= 2:
        cv = (StratifiedGroupKFold(inner, shuffle=True, random_state=seed) if groups is not None
              else StratifiedKFold(inner, shuffle=True, random_state=seed))
        pipe = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, scoring="balanced_accuracy", cv=cv)
        fit_kw = {"groups": groups} if groups is not None else {}
    with warnings.catch_warnings():  # a probe needs tol 1e-3, not the last digits of the optimum
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(xtr, ytr, **fit_kw)
    est = pipe.best_estimator_ if hasattr(pipe, "best_estimator_") else pipe
    if fitted is not None:
        fitted.append({"est": est})
    p = est.predict_proba(xte)
    out = np.zeros((len(xte), n_classes))
    out[:, est.classes_] = p
    return out


def knn_probe(xtr, ytr, xte, n_classes: int, k: int = 20, fitted: list | None = None) -> np.ndarray:
    clf = make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=min(k, len(ytr)), metric="cosine",
                                                           weights="distance"))
    clf.fit(xtr, ytr)
    if fitted is not None:
        fitted.append({"est": clf, "train": np.asarray(xtr), "labels": np.asarray(ytr, np.int64)})
    p = clf.predict_proba(xte)
    out = np.zeros((len(xte), n_classes))
    out[:, clf.classes_] = p
    return out


def few_shot(xtr, ytr, xte, n_classes: int, shots: int, draws: int = 10, seed: int = 0) -> np.ndarray:
    """Mean probabilities over ``draws`` logistic regressions, each on ``shots`` random examples per class."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((len(xte), n_classes))
    for _ in range(draws):
        idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), min(shots, int((ytr == c).sum())),
                                         replace=False)
                              for c in np.unique(ytr)])
        clf = make_pipeline(StandardScaler(),
                            LogisticRegression(max_iter=MAX_ITER, tol=TOL, C=1.0)).fit(xtr[idx], ytr[idx])
        p = clf.predict_proba(xte)
        acc[:, clf.classes_] += p
    return acc / draws
