"""What ``cytofm predict`` reports: a row per item (or cell) with the ensemble's mean probability and its
spread, the decision at the recorded operating point, the known answer and the leakage flags; the
specimens' totals; and the summary (metrics on the items not flagged, what was not checked or predicted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytofm.eval.saved_model import SavedModel

STORE_COLUMNS = {"id", "path", "h5", "n_instances", "source_sha256", "source_image", "cell_crop_um"}
"""Columns a feature store's manifest adds to the input's own (which predictions.csv carries)."""


def prediction_rows(model: SavedModel, rows: list[dict], probs: np.ndarray, flags: list[dict],
                    paths: dict[str, str] | None = None) -> list[dict]:
    """A row per item of ``rows`` from the members' probabilities (M, N, C) and the items' leakage flags
    (``checked_by`` is taken out of each and put after them), then the input's own columns, so the table
    joins back to the user's manifest; ``paths``: each stored path as the user gave it."""
    classes, label = model.classes, model.label
    mean, sd = probs.mean(0), probs.std(0)
    op = model.operating_point
    table = []
    for k, r in enumerate(rows):
        path = r.get("path", "")
        row = {"id": r["id"], "path": (paths or {}).get(path, path),
               "specimen": r.get(model.group_column or "specimen", r.get("specimen", ""))}
        row.update({f"p_{c}": round(float(v), 5) for c, v in zip(classes, mean[k], strict=True)})
        row.update({f"sd_{c}": round(float(v), 5) for c, v in zip(classes, sd[k], strict=True)})
        row["pred"] = classes[int(mean[k].argmax())]
        if op and op.get("threshold") is not None:
            pos = classes.index(op["positive_class"])
            row["pred_at_threshold"] = classes[pos] if mean[k][pos] >= op["threshold"] else classes[1 - pos]
        given = r.get(label) or "" if label else ""
        truth = as_class(given, classes)
        row["label"], row["label_given"] = truth, given if given != truth else ""
        row["correct"] = (truth == row["pred"]) if truth in classes else ""  # an unknown label is no error
        checked = flags[k].pop("checked_by")
        row.update(flags[k])
        row["excluded"] = any(flags[k].values())
        row["checked_by"] = checked
        for c, v in r.items():
            if c not in STORE_COLUMNS and c != label and not (c in row and str(row[c]) == str(v)):
                row[f"input_{c}" if c in row else c] = v
        table.append(row)
    return table


def as_class(given: str, classes) -> str:
    """A given label as the model's class it differs from only by case or surrounding spaces (``Blast ``,
    ``NORMAL``: taken as that class, and said in the summary), else the label stripped."""
    s = given.strip()
    if s in classes:
        return s
    same = [c for c in classes if c.casefold() == s.casefold()]
    return same[0] if len(same) == 1 else s


def specimen_columns(classes) -> list[str]:
    """specimens.csv's header, written even when no item has a specimen (a file a reader can still open)."""
    return ["specimen", "n_items", *(f"p_{c}" for c in classes), "pred"]


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


INTERVALS = ("Intervals: 95% percentile bootstrap over the items for the metrics; 95% Wilson score intervals "
             "for sensitivity and specificity at the operating point.")
"""What summary.md's intervals are (the report shows it under the summary)."""


def write_summary(model: SavedModel, table: list[dict], include_seen: bool, out: Path, n_models: int,
                  extra: list[str] = ()) -> tuple[dict | None, list[str]]:
    """``summary.json`` and ``summary.md``: the metrics (with labels) on the items not flagged, or all with
    ``include_seen``, the sensitivity and specificity at the operating point applied, what was left out
    and why, and the summary's lines."""
    from cytofm.pipeline.predict_leakage import specimen_check_line
    from cytofm.utils.io import write_json

    flagged = sum(1 for r in table if r["excluded"])
    lines = [f"{len(table)} item(s) predicted with {n_models} model(s); {flagged} flagged as seen "
             f"(trained on, same specimen, or in the encoder's pretraining)"
             + ("" if not flagged else
                (", included in the metrics" if include_seen else ", left out of the metrics"))]
    lines += [s for s in [specimen_check_line(model, table)] if s]
    by_bytes = sum(1 for r in table if r["checked_by"] == "bytes")
    if by_bytes:
        lines.append(f"{by_bytes} item(s) checked for leakage by their bytes only, not for re-encoded copies "
                     "(no pHash in the store: a whole slide, or features extracted by an earlier cytofm)")
    lines += label_lines(table, model.classes)
    scored = [r for r in table if r["label"] in model.classes and (include_seen or not r["excluded"])]
    metrics, notes = _metrics(scored, model.classes) if scored else (None, [])
    ba = (metrics or {}).get("balanced_accuracy")
    if ba:
        lo, hi = ba["ci95"]
        lines.append(f"balanced accuracy {ba['value']:.3f} [{lo:.3f}, {hi:.3f}] on {len(scored)} labelled "
                     "item(s) (95% item bootstrap)")
    screening = at_operating_point(scored, model.operating_point, model.classes)
    lines += screening_lines(screening) + notes
    if not scored and any(r["label"] for r in table):
        lines.append(_why_no_metrics(table, model.classes, include_seen))
    write_json(out / "summary.json", {"n_items": len(table), "n_flagged": flagged,
                                      "include_seen": include_seen, "metrics": metrics,
                                      "at_operating_point": screening,
                                      "operating_point": model.operating_point})
    lines += list(extra)
    (out / "summary.md").write_text("# Predictions\n\n" + "".join(f"- {ln}\n" for ln in lines)
                                    + f"\n{INTERVALS}\n")
    return metrics, lines


def label_lines(table: list[dict], classes) -> list[str]:
    """Labels that are not the model's classes, named with their counts (left out of the metrics, never
    counted as errors), and variants taken as a class (case or surrounding spaces)."""
    from collections import Counter

    unknown = Counter(r["label"] for r in table if r["label"] and r["label"] not in classes)
    variants = Counter((r["label_given"], r["label"]) for r in table
                       if r["label_given"] and r["label"] in classes)
    lines = []
    if unknown:
        lines.append(f"{sum(unknown.values())} item(s) with a label that is not one of the model's classes "
                     f"({', '.join(classes)}), left out of the metrics: "
                     + ", ".join(f"'{k}' ({n})" for k, n in unknown.most_common()))
    if variants:
        lines.append("warning: labels differing from the model's classes only by case or surrounding spaces, "
                     "taken as those classes: " + ", ".join(f"'{g}' as '{c}' ({n})"
                                                          for (g, c), n in variants.most_common()))
    return lines


def _why_no_metrics(table: list[dict], classes, include_seen: bool) -> str:
    labelled = [r for r in table if r["label"]]
    known = [r for r in labelled if r["label"] in classes]
    if not known:
        return (f"no metrics: none of the {len(labelled)} labelled item(s) has a label among the model's "
                f"classes ({', '.join(classes)})")
    return (f"no metrics: all {len(known)} item(s) with a known label are flagged as seen"
            + ("" if include_seen else " (--include-seen counts them)"))


def at_operating_point(scored: list[dict], op: dict | None, classes) -> dict | None:
    """Sensitivity and specificity of the decisions at the model's operating point (``pred_at_threshold``)
    on the scored items, each with its 95% Wilson score interval; None without a threshold or labels."""
    from cytofm.eval.intervals import proportion_interval

    if not op or op.get("threshold") is None or not scored or "pred_at_threshold" not in scored[0]:
        return None
    pos = op["positive_class"]
    positives = [r for r in scored if r["label"] == pos]
    negatives = [r for r in scored if r["label"] != pos]
    tp = sum(r["pred_at_threshold"] == pos for r in positives)
    tn = sum(r["pred_at_threshold"] != pos for r in negatives)
    sens, spec = proportion_interval(tp, len(positives)), proportion_interval(tn, len(negatives))
    return {"positive_class": pos, "threshold": op["threshold"],
            "sensitivity": {"value": sens[0], "ci95": list(sens[1:]), "flagged": tp,
                            "n_positive": len(positives)},
            "specificity": {"value": spec[0], "ci95": list(spec[1:]), "cleared": tn,
                            "n_negative": len(negatives)},
            "ci95_method": "Wilson score interval"}


def screening_lines(s: dict | None) -> list[str]:
    if s is None:
        return []

    def part(name, m, k, n):
        if not n:
            return f"{name} not measured (no {'positive' if k == 'flagged' else 'negative'} item)"
        lo, hi = m["ci95"]
        return f"{name} {m['value']:.3f} [{lo:.3f}, {hi:.3f}] ({m[k]} of {n})"

    sens, spec = s["sensitivity"], s["specificity"]
    return [f"at the operating point applied (p({s['positive_class']}) >= {s['threshold']:.3g}): "
            + part("sensitivity", sens, "flagged", sens["n_positive"]) + ", "
            + part("specificity", spec, "cleared", spec["n_negative"]) + " (95% Wilson score intervals)"]


def _metrics(scored: list[dict], classes: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Each metric on the scored items with its 95% item-bootstrap interval, and notes in words on what
    limits them (a class absent from the labels, a class with one item) instead of scikit-learn's warnings."""
    import warnings
    from collections import Counter

    from cytofm.eval.metrics import bootstrap_ci, classification_metrics

    y = np.array([classes.index(r["label"]) for r in scored])
    p = np.array([[r[f"p_{c}"] for c in classes] for r in scored])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = classification_metrics(y, p, len(classes))
        ci = bootstrap_ci(y, p, len(classes))
    counts = Counter(r["label"] for r in scored)
    notes = []
    absent = [c for c in classes if c not in counts]
    if absent:
        notes.append(f"class(es) absent from the labels: {', '.join(absent)}: balanced accuracy is the mean "
                     f"recall of the {len(counts)} class(es) present"
                     + ("; AUROC is not defined with one class" if len(counts) < 2 else ""))
    single = [c for c in classes if counts.get(c) == 1]
    if single:
        notes.append(f"warning: class(es) with a single labelled item: {', '.join(single)}: its recall is 0 "
                     "or 1, so the bootstrap interval is lopsided and unreliable; label more items")
    return {k: {"value": v, "ci95": list(ci.get(k, (np.nan, np.nan)))} for k, v in values.items()}, notes
