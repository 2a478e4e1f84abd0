"""Probes on frozen features: linear (regularisation by inner CV), cosine kNN, few-shot. Each is a
:class:`Probe` registered in ``cytofm.eval.probe_registry``: fitted on a fold's training items, applied to
its test items, and (the saved ones) written as arrays and read back without pickle, so that a loaded probe
gives the probabilities the fitted one gave, bit for bit (a test checks it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from cytofm.utils.io import atomic_path

C_GRID = (1e-3, 1e-2, 1e-1, 1.0)
"""Inverse L2 strengths on standardised features. Larger C fits hundreds of dimensions to a few hundred
cells (separable: the solver runs to its limit and the probe overfits), so the grid stops at 1."""
TOL, MAX_ITER = 1e-3, 500


def probe_proba(est: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities; a class the estimator never saw in training gets 0."""
    p = est.predict_proba(x)
    out = np.zeros((len(x), n_classes))
    out[:, est[-1].classes_] = p
    return out


class Probe:
    """One probe. ``fit`` returns the fitted probe as a dict (its estimator under ``"est"``, with what
    saving it needs), which ``proba`` applies; ``save`` writes ``arrays(fitted)`` as safetensors and
    ``load`` reads them back into the same dict (``restore``), so a loaded probe is used like a fitted one;
    ``refit`` fits on every labelled item as every fold was fitted. ``result_name`` names its rows in the
    tables and files."""

    name = ""

    def __init__(self, knn_k: int = 20, shots: int = 5):
        self.knn_k, self.shots = knn_k, shots

    @property
    def result_name(self) -> str:
        return self.name

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0, groups=None) -> dict:
        raise NotImplementedError

    def proba(self, fitted: dict, x: np.ndarray, n_classes: int) -> np.ndarray:
        return probe_proba(fitted["est"], x, n_classes)

    def refit(self, x: np.ndarray, y: np.ndarray, seed: int = 0, groups=None) -> dict:
        """On every labelled item, chosen as in every fold (linear: C by the same inner CV)."""
        return self.fit(x, y, seed, groups)

    def arrays(self, fitted: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"the {self.name} probe is evaluated, not saved")

    def restore(self, arrays: dict[str, np.ndarray]) -> dict:
        raise NotImplementedError(f"the {self.name} probe is evaluated, not saved")

    def save(self, fitted: dict, path: Path) -> None:
        from safetensors.numpy import save_file

        arrays = self.arrays(fitted)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))

    def load(self, path: Path) -> dict:
        from safetensors.numpy import load_file

        return self.restore(load_file(str(path)))


class LinearProbe(Probe):
    """Logistic regression on standardised features; C chosen by a 3-fold inner CV on the training fold
    (grouped by ``groups`` when given, so the choice of C is not made on near-copies of training items).
    A fixed ``c`` skips the inner CV: for studies that must probe exactly as they were published
    (``benchmarks/ssl_learning_signal.py``: C 0.5, 3000 iterations, scikit-learn's tolerance)."""

    name = "linear"

    def __init__(self, knn_k: int = 20, shots: int = 5, c: float | None = None, max_iter: int = MAX_ITER,
                 tol: float = TOL):
        super().__init__(knn_k, shots)
        self.c, self.max_iter, self.tol = c, max_iter, tol

    def fit(self, x, y, seed=0, groups=None) -> dict:
        fixed = {} if self.c is None else {"C": self.c}
        lr = LogisticRegression(max_iter=self.max_iter, tol=self.tol, **fixed)
        pipe = make_pipeline(StandardScaler(), lr)
        classes, counts = np.unique(y, return_counts=True)
        if groups is not None:
            counts = np.array([len(np.unique(groups[y == c])) for c in classes])
        inner = int(min(3, counts.min())) if self.c is None else 0
        fit_kw = {}
        if inner >= 2:
            cv = (StratifiedGroupKFold(inner, shuffle=True, random_state=seed) if groups is not None
                  else StratifiedKFold(inner, shuffle=True, random_state=seed))
            pipe = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, scoring="balanced_accuracy",
                                cv=cv)
            fit_kw = {"groups": groups} if groups is not None else {}
        with warnings.catch_warnings():  # a probe needs tol 1e-3, not the last digits of the optimum
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipe.fit(x, y, **fit_kw)
        return {"est": pipe.best_estimator_ if hasattr(pipe, "best_estimator_") else pipe}

    def arrays(self, fitted: dict) -> dict[str, np.ndarray]:
        scaler, lr = fitted["est"][0], fitted["est"][-1]
        return {"mean": scaler.mean_, "scale": scaler.scale_, "coef": lr.coef_, "intercept": lr.intercept_,
                "classes": lr.classes_.astype(np.int64)}

    def restore(self, a: dict[str, np.ndarray]) -> dict:
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_ = a["mean"], a["scale"]
        scaler.var_, scaler.n_features_in_ = a["scale"] ** 2, len(a["mean"])
        lr = LogisticRegression()
        lr.coef_, lr.intercept_, lr.classes_ = a["coef"], a["intercept"], a["classes"]
        lr.n_features_in_ = a["coef"].shape[1]
        return {"est": make_pipeline(scaler, lr)}


def _knn(k: int) -> Pipeline:
    return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=k, metric="cosine",
                                                            weights="distance"))


class KnnProbe(Probe):
    """Cosine kNN, distance-weighted; saved as its training features and labels (refitted on load)."""

    name = "knn"

    def fit(self, x, y, seed=0, groups=None) -> dict:
        est = _knn(min(self.knn_k, len(y))).fit(x, y)
        return {"est": est, "train": np.asarray(x), "labels": np.asarray(y, np.int64)}

    def arrays(self, fitted: dict) -> dict[str, np.ndarray]:
        return {"train": fitted["train"], "labels": fitted["labels"],
                "k": np.array([fitted["est"][-1].n_neighbors], np.int64)}

    def restore(self, a: dict[str, np.ndarray]) -> dict:
        return {"est": _knn(int(a["k"][0])).fit(a["train"], a["labels"]), "train": a["train"],
                "labels": a["labels"]}


class FewShotProbe(Probe):
    """Mean probabilities over ``draws`` logistic regressions, each on ``shots`` random examples per class."""

    name = "fewshot"
    draws = 10

    @property
    def result_name(self) -> str:
        return f"fewshot{self.shots}"

    def fit(self, x, y, seed=0, groups=None) -> dict:
        rng = np.random.default_rng(seed)
        fits = []
        for _ in range(self.draws):
            idx = np.concatenate([rng.choice(np.flatnonzero(y == c), min(self.shots, int((y == c).sum())),
                                             replace=False)
                                  for c in np.unique(y)])
            fits.append(make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, tol=TOL, C=1.0))
                        .fit(x[idx], y[idx]))
        return {"draws": fits}

    def proba(self, fitted: dict, x: np.ndarray, n_classes: int) -> np.ndarray:
        acc = np.zeros((len(x), n_classes))
        for clf in fitted["draws"]:
            acc[:, clf.classes_] += clf.predict_proba(x)
        return acc / len(fitted["draws"])


def _fit_apply(probe: Probe, xtr, ytr, xte, n_classes: int, fitted: list | None, **fit_kw) -> np.ndarray:
    f = probe.fit(xtr, ytr, **fit_kw)
    if fitted is not None:
        fitted.append(f)
    return probe.proba(f, xte, n_classes)


def linear_probe(xtr, ytr, xte, n_classes: int, seed: int = 0, groups=None,
                 fitted: list | None = None) -> np.ndarray:
    """:class:`LinearProbe` fitted on ``xtr`` and applied to ``xte``; ``fitted``: the fitted probe is
    appended to it (to be saved)."""
    return _fit_apply(LinearProbe(), xtr, ytr, xte, n_classes, fitted, seed=seed, groups=groups)


def knn_probe(xtr, ytr, xte, n_classes: int, k: int = 20, fitted: list | None = None) -> np.ndarray:
    return _fit_apply(KnnProbe(knn_k=k), xtr, ytr, xte, n_classes, fitted)


def few_shot(xtr, ytr, xte, n_classes: int, shots: int, draws: int = 10, seed: int = 0) -> np.ndarray:
    probe = FewShotProbe(shots=shots)
    probe.draws = draws
    return _fit_apply(probe, xtr, ytr, xte, n_classes, None, seed=seed)
