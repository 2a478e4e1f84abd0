"""Run a method over folds x seeds and write the evidence: per-fold metrics, per-item predictions,
summary, confusion matrices.

Each metric's estimate is the mean over folds x seeds, and its interval is for that mean (corrected
resampled t, ``cytofm.eval.intervals``). The item bootstrap is kept for a different quantity, named as such:
the metric of the out-of-fold probabilities averaged over seeds (an ensemble of the seeds' models).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cytofm.eval.intervals import corrected_t_interval
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.metrics import METRICS, bootstrap_ci, chance_levels, classification_metrics, counts_text
from cytofm.eval.splits import Split
from cytofm.utils.io import nan_from_null, strict_json, write_csv
from cytofm.utils.progress import StageTask

# method(train_index, test_index, split) -> (probabilities of the test items, extra per-item outputs or None)
Method = Callable[[np.ndarray, np.ndarray, Split], tuple[np.ndarray, list | None]]

CI_METHOD = "corrected resampled t over folds x seeds (Nadeau & Bengio 2003)"
FIXED_CI_METHOD = ("percentile bootstrap over the test items of the one fixed split "
                   "(training repeated over seeds)")
ENSEMBLE = "metric of out-of-fold probabilities averaged over seeds, percentile bootstrap over items"


def bounded_interval(ci, bounds: tuple[float, float]) -> dict:
    """An interval clipped to the range its metric can take (a balanced accuracy's t interval can reach
    past 0 or 1 with few folds), with the unclipped one kept for the CSV."""
    lo, hi = (float(v) for v in ci)
    clip = [max(lo, bounds[0]) if np.isfinite(lo) else lo, min(hi, bounds[1]) if np.isfinite(hi) else hi]
    return {"ci95": clip, "ci95_unclipped": [lo, hi]}


def ids_key(ids) -> str:
    """A short hash of a set of item ids: two folds are paired only when their test sets match."""
    return hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:12]


def run_method(name: str, data: LabelledSet, splits: list[Split], method: Method, out: Path, progress=None,
               title: str = "") -> dict:
    """``title`` (which encoder on which task) heads the figures, so a figure read on its own says what it
    shows."""
    n_c = len(data.classes)
    fold_rows, pred_rows = [], []
    oof: dict[int, np.ndarray] = {}
    with StageTask(progress, name, len(splits), rate="") as task:
        for sp in splits:
            proba, _ = method(sp.train, sp.test, sp)
            m = classification_metrics(data.y[sp.test], proba, n_c)
            fold_rows.append({"method": name, "seed": sp.seed, "fold": sp.fold, "n_train": len(sp.train),
                              "n_test": len(sp.test), "test_ids": ids_key(data.ids[i] for i in sp.test),
                              **{k: round(v, 4) for k, v in m.items()}})
            acc = oof.setdefault(sp.seed, np.full((len(data.y), n_c), np.nan))
            acc[sp.test] = proba
            for i, p in zip(sp.test, proba, strict=True):
                pred_rows.append({"method": name, "seed": sp.seed, "fold": sp.fold, "id": data.ids[i],
                                  "label": data.classes[data.y[i]], "pred": data.classes[int(p.argmax())],
                                  **{f"p_{c}": round(float(v), 5)
                                     for c, v in zip(data.classes, p, strict=True)}})
            task.update(advance=1)
    # the seed ensemble: items predicted out of fold in every seed, probabilities averaged over seeds
    stack = np.stack(list(oof.values()))
    covered = ~np.isnan(stack).any(axis=(0, 2))
    mean_proba = stack[:, covered].mean(axis=0)
    y_cov = data.y[covered]
    ens = classification_metrics(y_cov, mean_proba, n_c)
    ci = bootstrap_ci(y_cov, mean_proba, n_c)
    ratio = float(np.mean([len(sp.test) / len(sp.train) for sp in splits]))
    # one fixed split (repeated over seeds): folds give no spread of test sets, so the interval is the item
    # bootstrap of that split's test items
    fixed = len({r["test_ids"] for r in fold_rows}) == 1
    summary = {"method": name, "n_items": int(covered.sum()), "n_splits": len(splits),
               "classes": data.classes,
               "class_counts": {c: int((y_cov == i).sum()) for i, c in enumerate(data.classes)},
               "ci95_method": FIXED_CI_METHOD if fixed else CI_METHOD,
               "ensemble_method": ENSEMBLE, "test_train_ratio": ratio}
    for k in METRICS:
        vals = np.array([r[k] for r in fold_rows], dtype=float)
        iv = corrected_t_interval(vals, ratio)
        boot = list(ci.get(k, (np.nan, np.nan)))
        summary[k] = {"mean": iv.mean, "sd": float(np.nanstd(vals, ddof=1)) if iv.n > 1 else 0.0,
                      **bounded_interval(boot if fixed else [iv.low, iv.high], (0.0, 1.0)),
                      "ensemble": ens[k], "ensemble_item_bootstrap_ci95": boot}
        if not np.isfinite(summary[k]["ci95"]).all():
            summary[k]["ci95_note"] = ("fewer than 2 test items" if fixed else "fewer than 2 folds x seeds")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"folds_{name}.csv", fold_rows)
    write_csv(out / f"predictions_{name}.csv", pred_rows)
    (out / f"summary_{name}.json").write_text(
        strict_json({k: v for k, v in summary.items() if not k.startswith("_")}))
    confusion_png(y_cov, mean_proba.argmax(1), data.classes, out / f"confusion_{name}.png",
                  f"{title}, {name}" if title else name)
    # out-of-fold predictions, kept in memory for paired comparisons between encoders on the same items
    summary["_oof"] = {"ids": [data.ids[i] for i in np.flatnonzero(covered)], "y": y_cov, "proba": mean_proba}
    summary["_folds"] = fold_rows  # per-fold scores, paired by (seed, fold, test ids) between encoders
    return summary


FOLD_INTS = ("seed", "fold", "n_train", "n_test")


def load_method(name: str, out: Path) -> dict | None:
    """A finished ``run_method`` summary read back from ``out`` (summary JSON and per-fold rows typed as
    written), so an unchanged evaluation is reused rather than re-run; None when its files are missing."""
    import csv

    sj, fc = out / f"summary_{name}.json", out / f"folds_{name}.csv"
    if not sj.is_file() or not fc.is_file():
        return None
    summary = json.loads(sj.read_text())
    for k in METRICS:  # written strict (NaN as null): the numbers back as NaN
        summary[k] = nan_from_null(summary[k])
    with open(fc, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in r:
            if k in FOLD_INTS:
                r[k] = int(r[k])
            elif k in METRICS:
                r[k] = float(r[k])
    summary["_folds"] = rows
    return summary


def confusion_png(y: np.ndarray, pred: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2.2 + 0.7 * n, 1.8 + 0.7 * n), dpi=110)
    ConfusionMatrixDisplay.from_predictions(y, pred, labels=list(range(n)), display_labels=classes, ax=ax,
                                            colorbar=True, xticks_rotation=45, cmap="Blues")
    ax.set_title(f"{title}\nout-of-fold predictions, {len(y)} items", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def results_table(summaries: list[dict]) -> list[dict]:
    """A row per method and metric, with the items' class counts and the metric's chance level."""
    rows = []
    for s in summaries:
        counts = s.get("class_counts") or {}
        chance = chance_levels(counts) if counts else {}
        for k in METRICS:
            rows.append({"method": s["method"], "metric": k,
                         "mean": round(s[k]["mean"], 4), "sd": round(s[k]["sd"], 4),
                         "ci95_low": round(s[k]["ci95"][0], 4), "ci95_high": round(s[k]["ci95"][1], 4),
                         "ci95_low_unclipped": round(s[k].get("ci95_unclipped", s[k]["ci95"])[0], 4),
                         "ci95_high_unclipped": round(s[k].get("ci95_unclipped", s[k]["ci95"])[1], 4),
                         "ensemble": round(s[k]["ensemble"], 4),
                         "ensemble_item_boot_low": round(s[k]["ensemble_item_bootstrap_ci95"][0], 4),
                         "ensemble_item_boot_high": round(s[k]["ensemble_item_bootstrap_ci95"][1], 4),
                         "n_items": s["n_items"], "n_splits": s["n_splits"],
                         "chance": "" if chance.get(k) is None else round(chance[k], 4),
                         "class_counts": counts_text(counts)})
    return rows


def markdown_table(summaries: list[dict]) -> str:
    """The methods' means, sd and intervals, then the chance level of each metric and the class counts."""
    head = "| method | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    body = ""
    for s in summaries:
        cells = [f"{s[k]['mean']:.3f} +- {s[k]['sd']:.3f} {interval_text(s[k])}" for k in METRICS]
        body += f"| {s['method']} | " + " | ".join(cells) + " |\n"
    counts = summaries[0].get("class_counts") if summaries else None
    chance = chance_levels(counts) if counts and any(counts.values()) else None
    if chance:  # what a classifier that knows nothing scores
        body += "| chance | " + " | ".join("-" if chance[k] is None else f"{chance[k]:.3f}"
                                           for k in METRICS) + " |\n"
    how = summaries[0]["ci95_method"] if summaries else CI_METHOD
    return head + body + (f"\nmean +- sd over folds x seeds [95% CI: {how}]. The item bootstrap of the seed "
                          "ensemble is in results.csv (columns ensemble*), a different quantity.\n"
                          + (f"Items by class: {counts_text(counts)}. Chance: balanced accuracy "
                             f"{chance['balanced_accuracy']:.3f} (1 / classes), AUROC 0.5, accuracy "
                             f"{chance['accuracy']:.3f} (the largest class's share).\n" if chance else ""))


def interval_text(m: dict) -> str:
    """``[low, high]``, or why there is none (never ``[nan, nan]``)."""
    lo, hi = m["ci95"]
    if np.isfinite(lo) and np.isfinite(hi):
        return f"[{lo:.3f}, {hi:.3f}]"
    return f"(no interval: {m.get('ci95_note', 'too few results')})"
