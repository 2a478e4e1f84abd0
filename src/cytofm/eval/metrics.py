"""Classification metrics with the statistics a reviewer asks for: mean +- sd over folds x seeds and
95% bootstrap confidence intervals over items."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "auroc")
CHUNK_ELEMENTS = 2_000_000
"""Resamples x items evaluated at once by the bootstrap (a few such float arrays are held)."""


def classification_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """``y`` int labels (N,), ``proba`` (N, C). AUROC: binary on class 1, else one-vs-rest macro over the
    classes present in ``y`` with probabilities renormalised over them (NaN when fewer than two are present;
    exactly two present: the binary AUROC of the second one, which is what one-vs-rest gives there)."""
    pred = proba.argmax(1)
    out = {
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
    }
    present = np.unique(y)
    if len(present) < 2:
        out["auroc"] = float("nan")
    elif n_classes == 2:
        out["auroc"] = float(roc_auc_score(y, proba[:, 1]))
    else:
        p = proba[:, present]
        p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
        if len(present) == 2:
            out["auroc"] = float(roc_auc_score(y == present[1], p[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=present))
    return out


def chance_levels(class_counts: dict[str, int]) -> dict[str, float | None]:
    """What a classifier that knows nothing scores on items of these class counts, so a table's numbers can
    be read against it: balanced accuracy 1 / (classes present), AUROC 0.5, accuracy the largest class's
    share (always predicting it); macro-F1 has no single chance level (None)."""
    n = [v for v in class_counts.values() if v > 0]
    if not n:
        return dict.fromkeys(METRICS)
    return {"balanced_accuracy": 1 / len(n), "macro_f1": None, "accuracy": max(n) / sum(n), "auroc": 0.5}


def counts_text(class_counts: dict[str, int]) -> str:
    """``a 20, b 19``: a task's classes with their item counts."""
    return ", ".join(f"{c} {n}" for c, n in class_counts.items())


def _weighted_auc(pos: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) ROC AUC of ``score`` for the items ``pos`` under each row of item counts ``w`` (B, N): the
    Mann-Whitney statistic with ties counted half, the pairs weighted by their items' counts (a bootstrap
    resample is the data with such counts, so this is ``roc_auc_score`` of every resample at once)."""
    order = np.argsort(score, kind="stable")
    s, wp, wn = score[order], (w * pos)[:, order], (w * ~pos)[:, order]
    first = np.r_[True, s[1:] != s[:-1]]
    start = np.flatnonzero(first)[np.cumsum(first) - 1]  # each position's tie group: its first position
    end = np.flatnonzero(np.r_[first[1:], True])[np.cumsum(first) - 1] + 1  # exclusive
    cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(wn, 1)], 1)
    below, tied = cum[:, start], cum[:, end] - cum[:, start]
    n_pos, n_neg = wp.sum(1), wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (wp * (below + 0.5 * tied)).sum(1) / (n_pos * n_neg)


def weighted_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int,
                     w: np.ndarray) -> dict[str, np.ndarray]:
    """``classification_metrics`` of B weighted copies of the items at once (``w`` (B, N) item counts, as a
    bootstrap resample has them), with numpy alone: scikit-learn's input checks cost ~25 ms a call, and a
    thousand resamples one by one took 1.7 s on 40 items. Per row: the classes present are those with a
    positive count; AUROC as ``classification_metrics`` defines it (NaN below two classes present)."""
    w = np.asarray(w, np.float64)
    onehot_y = np.eye(n_classes)[y]
    onehot_p = np.eye(n_classes)[proba.argmax(1)]
    support, predicted, tp = w @ onehot_y, w @ onehot_p, w @ (onehot_y * onehot_p)
    present = support > 0
    n_present = present.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / support, 0.0)
        f1 = np.where(present, 2 * tp / (support + predicted), 0.0)
        out = {"balanced_accuracy": recall.sum(1) / n_present, "macro_f1": f1.sum(1) / n_present,
               "accuracy": tp.sum(1) / w.sum(1)}
    auroc = np.full(len(w), np.nan)
    for pattern in np.unique(present[n_present >= 2], axis=0):  # rows with the same classes present
        rows = np.flatnonzero((present == pattern).all(1))
        cls = np.flatnonzero(pattern)
        if n_classes == 2:
            auroc[rows] = _weighted_auc(y == 1, proba[:, 1], w[rows])
            continue
        p = proba[:, cls] / np.clip(proba[:, cls].sum(1, keepdims=True), 1e-12, None)
        if len(cls) == 2:
            auroc[rows] = _weighted_auc(y == cls[1], p[:, 1], w[rows])
        else:
            auroc[rows] = np.mean([_weighted_auc(y == c, p[:, k], w[rows]) for k, c in enumerate(cls)], 0)
    out["auroc"] = auroc
    return out


def fast_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """``classification_metrics`` computed with numpy alone (``weighted_metrics`` with every count 1);
    equal to it (tested on random cases with ties and missing classes)."""
    return {k: float(v[0]) for k, v in weighted_metrics(y, proba, n_classes, np.ones((1, len(y)))).items()}


def _resample_counts(rng, y: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, N) item counts of bootstrap resamples, each holding at least two classes (resamples with
    a single class are redrawn, up to 5 x n_boot draws in all)."""
    n, rows, drawn = len(y), [], 0
    while sum(len(r) for r in rows) < n_boot and drawn < 5 * n_boot:
        b = min(n_boot, 5 * n_boot - drawn)
        drawn += b
        idx = rng.integers(0, n, (b, n))
        counts = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n)
        two = np.array([len(np.unique(y[r > 0])) >= 2 for r in counts]) if n else np.zeros(b, bool)
        rows.append(counts[two])
    return np.concatenate(rows)[:n_boot] if rows else np.zeros((0, n))


def bootstrap_ci(y: np.ndarray, proba: np.ndarray, n_classes: int, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over items of every metric (resamples with a single class are redrawn)."""
    w = _resample_counts(np.random.default_rng(seed), np.asarray(y), n_boot)
    if not len(w):
        return {}
    step = max(1, CHUNK_ELEMENTS // max(len(y), 1))  # (resamples, items) arrays of bounded size
    parts = [weighted_metrics(np.asarray(y), np.asarray(proba), n_classes, w[s:s + step])
             for s in range(0, len(w), step)]
    samples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {k: (float(np.nanpercentile(v, 100 * alpha / 2)),
                float(np.nanpercentile(v, 100 * (1 - alpha / 2))))
            for k, v in samples.items() if np.isfinite(v).any()}


def paired_difference(y: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray, n_classes: int,
                      metric: str = "balanced_accuracy", n_boot: int = 1000,
                      seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Metric(A) - metric(B) on the same items, with a paired bootstrap 95% CI: "A beats B" when it
    excludes 0."""
    rng = np.random.default_rng(seed)
    diff = (classification_metrics(y, proba_a, n_classes)[metric]
            - classification_metrics(y, proba_b, n_classes)[metric])
    d = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        d.append(classification_metrics(y[idx], proba_a[idx], n_classes)[metric]
                 - classification_metrics(y[idx], proba_b[idx], n_classes)[metric])
    return float(diff), (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
