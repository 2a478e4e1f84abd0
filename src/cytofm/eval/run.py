"""Run a method over folds x seeds and write the evidence: per-fold metrics, per-item predictions,
summary with mean +- sd and bootstrap CIs, confusion matrices."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cytofm.eval.data import LabelledSet
from cytofm.eval.metrics import METRICS, bootstrap_ci, classification_metrics
from cytofm.eval.splits import Split
from cytofm.utils.io import write_csv

# method(train_index, test_index, split) -> (probabilities of the test items, extra per-item outputs or None)
Method = Callable[[np.ndarray, np.ndarray, Split], tuple[np.ndarray, list | None]]


def run_method(name: str, data: LabelledSet, splits: list[Split], method: Method, out: Path, progress=None) -> dict:
    n_c = len(data.classes)
    fold_rows, pred_rows = [], []
    oof: dict[int, np.ndarray] = {}
    task = progress.add_task(name, total=len(splits), rate="") if progress is not None else None
    for sp in splits:
        proba, _ = method(sp.train, sp.test, sp)
        m = classification_metrics(data.y[sp.test], proba, n_c)
        fold_rows.append({"method": name, "seed": sp.seed, "fold": sp.fold, "n_train": len(sp.train),
                          "n_test": len(sp.test), **{k: round(v, 4) for k, v in m.items()}})
        acc = oof.setdefault(sp.seed, np.full((len(data.y), n_c), np.nan))
        acc[sp.test] = proba
        for i, p in zip(sp.test, proba, strict=True):
            pred_rows.append({"method": name, "seed": sp.seed, "fold": sp.fold, "id": data.ids[i],
                              "label": data.classes[data.y[i]], "pred": data.classes[int(p.argmax())],
                              **{f"p_{c}": round(float(v), 5) for c, v in zip(data.classes, p, strict=True)}})
        if progress is not None:
            progress.update(task, advance=1)
    # items predicted out of fold in every seed: average their probabilities over seeds for the CI
    stack = np.stack(list(oof.values()))
    covered = ~np.isnan(stack).any(axis=(0, 2))
    mean_proba = np.nanmean(stack, axis=0)[covered]
    y_cov = data.y[covered]
    ci = bootstrap_ci(y_cov, mean_proba, n_c)
    summary = {"method": name, "n_items": int(covered.sum()), "n_splits": len(splits), "classes": data.classes}
    for k in METRICS:
        vals = np.array([r[k] for r in fold_rows], dtype=float)
        summary[k] = {"mean": float(np.nanmean(vals)), "sd": float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0,
                      "ci95": list(ci.get(k, (np.nan, np.nan)))}
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"folds_{name}.csv", fold_rows)
    write_csv(out / f"predictions_{name}.csv", pred_rows)
    (out / f"summary_{name}.json").write_text(json.dumps({k: v for k, v in summary.items() if not k.startswith("_")}, indent=2))
    confusion_png(y_cov, mean_proba.argmax(1), data.classes, out / f"confusion_{name}.png", name)
    # out-of-fold predictions, kept in memory for paired comparisons between encoders on the same items
    summary["_oof"] = {"ids": [data.ids[i] for i in np.flatnonzero(covered)], "y": y_cov, "proba": mean_proba}
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
    ax.set_title(f"{title}: out-of-fold predictions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def results_table(summaries: list[dict]) -> list[dict]:
    rows = []
    for s in summaries:
        for k in METRICS:
            rows.append({"method": s["method"], "metric": k, "mean": round(s[k]["mean"], 4), "sd": round(s[k]["sd"], 4),
                         "ci95_low": round(s[k]["ci95"][0], 4), "ci95_high": round(s[k]["ci95"][1], 4),
                         "n_items": s["n_items"], "n_splits": s["n_splits"]})
    return rows


def markdown_table(summaries: list[dict]) -> str:
    head = "| method | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    body = ""
    for s in summaries:
        cells = [f"{s[k]['mean']:.3f} +- {s[k]['sd']:.3f} [{s[k]['ci95'][0]:.3f}, {s[k]['ci95'][1]:.3f}]" for k in METRICS]
        body += f"| {s['method']} | " + " | ".join(cells) + " |\n"
    return head + body
