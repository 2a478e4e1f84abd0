"""What a ``cytofm probe`` run leaves for ``cytofm predict``: each saved probe as arrays, without pickle (a
linear probe as its scaler and logistic-regression coefficients, a kNN probe as its training features and
labels; the probe's own ``save``/``load`` in ``cytofm.eval.probes``), and the run's ``model.json`` beside
them, as ``cytofm.eval.saved_model.save_mil_run`` leaves a MIL run's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.pipeline import Pipeline

from cytofm.eval.probe_registry import make_probe
from cytofm.eval.probes import probe_proba

__all__ = ["apply_saved_probe", "load_probe", "members_proba", "probe_proba", "save_probe", "save_probe_run"]


def save_probe(method: str, fitted: dict, path: Path) -> None:
    """``fitted`` as the probe's ``fit`` hands it out (its estimator, and for kNN its training set)."""
    make_probe(method).save(fitted, path)


def load_probe(method: str, path: Path) -> Pipeline:
    """The estimator of a saved probe (apply it with :func:`probe_proba`)."""
    return make_probe(method).load(path)["est"]


def apply_saved_probe(method: str, path: Path, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities of the saved probe at ``path``, applied as the probe applies itself
    (for any registered probe, not only those whose estimator is a scikit-learn pipeline)."""
    probe = make_probe(method)
    return probe.proba(probe.load(path), x, n_classes)


def members_proba(method: str, files: list[Path], x: np.ndarray, n_classes: int) -> np.ndarray:
    """Each saved member's probabilities (M, n, n_classes): what ``predict`` averages over an ensemble."""
    return np.stack([apply_saved_probe(method, f, x, n_classes) for f in files])


def save_probe_run(store: Path, out: Path, data, summaries: list[dict], cfg) -> tuple[Path | None, list[str],
                                                                                         dict]:
    """``model.json`` of a ``cytofm probe`` run (``cfg``: its ``ProbeConfig``) beside the fold x seed probes
    it saved, and each of them refit on every item when ``cfg.refit``: (its path, the probes saved, the refit
    records). No probe saved (few-shot alone): nothing to apply later, nothing written (path ``None``)."""
    from cytofm.eval.evaluate_store import refit_probe
    from cytofm.eval.saved_model import probe_record, write_model_json

    saved = [s["method"] for s in summaries if s.get("_members")]
    if not saved:
        return None, saved, {}
    groups = {s["method"]: s.get("_groups") for s in summaries}  # those the folds kept whole
    refits = {m: refit_probe(data, out, m, cfg.knn_k, groups=groups[m]) for m in saved} if cfg.refit else {}
    settings = {"label": cfg.label, "group_column": cfg.group_column, "exclude": list(cfg.exclude),
                "knn_k": cfg.knn_k}
    rec = probe_record(store, data, summaries, settings, cfg.target_sensitivity, refits, cfg.positive_class)
    return write_model_json(out, rec), saved, refits
