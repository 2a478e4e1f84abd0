"""A fitted probe as arrays and back, without pickle: a linear probe as its scaler (mean, scale) and
logistic-regression coefficients, a kNN probe as its (normalised) training features and labels. Loading
rebuilds the scikit-learn estimators from those arrays, so a loaded probe gives the probabilities the
fitted one gave, bit for bit (a test checks it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from cytofm.utils.io import atomic_path

SAVED = ("linear", "knn")
"""The probes saved for ``cytofm predict`` (few-shot is an average of ten draws of a few examples: it is
evaluated, not applied)."""


def probe_arrays(method: str, fitted: dict) -> dict[str, np.ndarray]:
    """``fitted`` as the probes hand it out: the pipeline, and for kNN its training features and labels."""
    est = fitted["est"]
    if method == "linear":
        scaler, lr = est[0], est[-1]
        return {"mean": scaler.mean_, "scale": scaler.scale_, "coef": lr.coef_, "intercept": lr.intercept_,
                "classes": lr.classes_.astype(np.int64)}
    return {"train": fitted["train"], "labels": fitted["labels"],
            "k": np.array([est[-1].n_neighbors], np.int64)}


def save_probe(method: str, fitted: dict, path: Path) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in probe_arrays(method, fitted).items()}, str(tmp))


def load_probe(method: str, path: Path) -> Pipeline:
    from safetensors.numpy import load_file

    a = load_file(str(path))
    if method == "linear":
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_ = a["mean"], a["scale"]
        scaler.var_, scaler.n_features_in_ = a["scale"] ** 2, len(a["mean"])
        lr = LogisticRegression()
        lr.coef_, lr.intercept_, lr.classes_ = a["coef"], a["intercept"], a["classes"]
        lr.n_features_in_ = a["coef"].shape[1]
        return make_pipeline(scaler, lr)
    knn = make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=int(a["k"][0]), metric="cosine",
                                                           weights="distance"))
    return knn.fit(a["train"], a["labels"])


def probe_proba(est: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    p = est.predict_proba(x)
    out = np.zeros((len(x), n_classes))
    out[:, est[-1].classes_] = p
    return out
