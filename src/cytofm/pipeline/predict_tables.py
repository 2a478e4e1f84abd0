"""What ``cytofm predict`` reports: a row per item (or cell) with the ensemble's mean probability and its
spread, the decision at the recorded operating point, the known answer and the leakage flags; the
specimens' totals; and the summary (metrics on the items not flagged, what was not checked or predicted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cytofm.eval.saved_model import SavedModel


def prediction_rows(model: SavedModel, rows: list[dict], probs: np.ndarray, flags: list[dict]) -> list[dict]:
    """A row per item of ``rows`` from the members' probabilities (M, N, C) and the items' leakage flags
    (``checked_by`` is taken out of each and put last)."""
    classes, label = model.classes, model.label
    mean, sd = probs.mean(0), probs.std(0)
    op = model.operating_point
    table = []
    for k, r in enumerate(rows):
        row = {"id": r["id"], "path": r.get("path", ""),
               "specimen": r.get(model.group_column or "specimen", r.get("specimen", ""))}
        row.update({f"p_{c}": round(float(v), 5) for c, v in zip(classes, mean[k], strict=True)})
        row.update({f"sd_{c}": round(float(v), 5) for c, v in zip(classes, sd[k], strict=True)})
        row["pred"] = classes[int(mean[k].argmax())]
        if op and op.get("threshold") is not None:
            pos = classes.index(op["positive_class"])
            row["pred_at_threshold"] = classes[pos] if mean[k][pos] >= op["threshold"] else classes[1 - pos]
        truth = r.get(label, "").strip() if label else ""
        row["label"], row["correct"] = truth, (truth == row["pred"]) if truth else ""
        checked = flags[k].pop("checked_by")
        row.update(flags[k])
        row["excluded"] = any(flags[k].values())
        row["checked_by"] = checked
        table.append(row)
    return table


def specimen_rows(table: list[dict], classes: tuple[str, ...]) -> list[dict]:
    """A specimen's items pooled: the mean of their probabilities, and how many there are."""
    groups: dict[str, list[dict]] = {}
    for r in table:
        if r["specimen"]:
            groups.setdefault(str(r["specimen"]), []).append(r)
    out = []
    for s, items in groups.items():
        p = np.array([[r[f"p_{c}"] for c in classes] for r in items]).mean(0)
        out.append({"specimen": s, "n_items": len(items), **{f"p_{c}": round(float(v), 5)
                                                              for c, v in zip(classes, p, strict=True)},
                    "pred": classes[int(p.argmax())]})
    return out


def skipped_lines(out: Path) -> list[str]:
    """The sources prepare or extract left out (blank glass, no cell found, an unreadable file), which
    have no prediction: how many, and where the reasons are."""
    from cytofm.utils.io import read_csv

    lines = []
    for stage in ("prepared", "features"):
        p = out / stage / "skipped.csv"
        rows = read_csv(p) if p.is_file() else []
        if rows:
            name = "prepare" if stage == "prepared" else "extract"
            lines.append(f"{len(rows)} source(s) left out at {name} and not predicted (e.g. "
                         f"{rows[0]['path']}: {rows[0]['reason']}); all in {p}")
    return lines


def write_summary(model: SavedModel, table: list[dict], include_seen: bool, out: Path, n_models: int,
                  extra: list[str] = ()) -> tuple[dict | None, list[str]]:
    """``summary.json`` and ``summary.md``: the metrics (with labels) on the items not flagged, or all with
    ``include_seen``, and the summary's lines."""
    flagged = sum(1 for r in table if r["excluded"])
    lines = [f"{len(table)} item(s) predicted with {n_models} model(s); {flagged} flagged as seen "
             f"(trained on, same specimen, or in the encoder's pretraining)"
             + ("" if not flagged else
                (", included in the metrics" if include_seen else ", left out of the metrics"))]
    group = model.group_column
    if group and not any(r["specimen"] for r in table):
        lines.append(f"specimen leakage not checked: the input has no '{group}' column (the model's "
                     "training specimens are in model.json)")
    by_bytes = sum(1 for r in table if r["checked_by"] == "bytes")
    if by_bytes:
        lines.append(f"{by_bytes} item(s) checked for leakage by their bytes only, not for re-encoded copies "
                     "(no pHash in the store: a whole slide, or features extracted by an earlier cytofm)")
    scored = [r for r in table if r["label"] in model.classes and (include_seen or not r["excluded"])]
    metrics = _metrics(scored, model.classes) if scored else None
    ba = (metrics or {}).get("balanced_accuracy")
    if ba:
        lines.append(f"balanced accuracy {ba['value']:.3f} [{ba['ci95'][0]:.3f}, {ba['ci95'][1]:.3f}] on "
                     f"{len(scored)} labelled item(s) (95% item bootstrap)")
    (out / "summary.json").write_text(json.dumps({"n_items": len(table), "n_flagged": flagged,
                                                  "include_seen": include_seen, "metrics": metrics,
                                                  "operating_point": model.operating_point}, indent=2))
    lines += list(extra)
    (out / "summary.md").write_text("# Predictions\n\n" + "".join(f"- {ln}\n" for ln in lines))
    return metrics, lines


def _metrics(scored: list[dict], classes: tuple[str, ...]) -> dict:
    """Each metric on the scored items with its 95% item-bootstrap interval."""
    from cytofm.eval.metrics import bootstrap_ci, classification_metrics

    y = np.array([classes.index(r["label"]) for r in scored])
    p = np.array([[r[f"p_{c}"] for c in classes] for r in scored])
    ci = bootstrap_ci(y, p, len(classes))
    return {k: {"value": v, "ci95": list(ci.get(k, (np.nan, np.nan)))}
            for k, v in classification_metrics(y, p, len(classes)).items()}
