"""Labelled items of a feature store, checked before any metric is computed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytofm.features.store import load_store, read_item
from cytofm.utils.errors import InputError


@dataclass
class LabelledSet:
    ids: list[str]
    bags: list[np.ndarray]  # (N_i, D) per item
    y: np.ndarray  # int labels
    classes: list[str]
    groups: np.ndarray | None
    fixed: np.ndarray | None
    dropped: int  # items without a label
    paths: list[str] | None = None  # source image of each item (store manifest column ``path``)

    def subset(self, idx) -> LabelledSet:
        """The items at ``idx``, in that order (classes kept, so labels stay comparable)."""
        idx = np.asarray(idx, dtype=int)
        return LabelledSet([self.ids[i] for i in idx], [self.bags[i] for i in idx], self.y[idx], self.classes,
                           self.groups[idx] if self.groups is not None else None,
                           self.fixed[idx] if self.fixed is not None else None, self.dropped,
                           [self.paths[i] for i in idx] if self.paths is not None else None)

    def pooled(self) -> np.ndarray:
        """Mean-pooled item features (N, D); an item with one instance is its instance."""
        return np.stack([b.mean(0) for b in self.bags])


def _features(row: dict) -> np.ndarray:
    """An item's features, refused with the file and item named when they cannot be used: a damaged or
    truncated h5 (before any training, not in a library's traceback after it) or NaN/inf values (which
    scikit-learn would reject only after the folds before them had trained)."""
    h5 = row["h5"]
    try:
        f, _, _ = read_item(h5)
    except (OSError, KeyError) as e:
        raise InputError(f"{h5}: unreadable feature file of item '{row['id']}' ({str(e).split(';')[0]}); "
                         "run the same `cytofm extract` again: it extracts unreadable items anew") from None
    bad = ~np.isfinite(f)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise InputError(f"{h5}: item '{row['id']}' has non-finite features (NaN/inf) in {len(rows)} "
                         f"of its {len(f)} instance(s) (first: {rows[0]}); delete the file and run "
                         "`cytofm extract` again, or leave the item out")
    return f


def load_labelled_store(root: str, label: str, group_column: str | None = None,
                        split_column: str | None = None, exclude: tuple[str, ...] = (),
                        log=print) -> LabelledSet:
    try:
        rows = load_store(root)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    if rows and label not in rows[0]:
        raise InputError(f"{root}/manifest.csv has no column '{label}' (columns: {', '.join(rows[0])})")
    for col in (group_column, split_column):
        if col and rows and col not in rows[0]:
            raise InputError(f"{root}/manifest.csv has no column '{col}'")
    # in id order, so stores of the same items give the same splits whatever their manifest order
    keep = sorted((r for r in rows if r.get(label, "").strip() and r[label].strip() not in exclude),
                  key=lambda r: r["id"])
    dropped = len(rows) - len(keep)
    if dropped:
        log(f"note: {dropped} item(s) without a usable '{label}' label are left out")
    if not keep:
        raise InputError(f"no item of {root} has a '{label}' label")
    bags, dim = [], None
    for r in keep:
        f = _features(r)
        if dim is None:
            dim = f.shape[1]
        elif f.shape[1] != dim:
            raise InputError(f"{r['h5']}: features of size {f.shape[1]}, but earlier items have {dim} "
                             "(mixed encoders in one store?)")
        bags.append(f.astype(np.float32))
    classes = sorted({r[label].strip() for r in keep})
    _warn_case_variants(classes, keep, label, root, log)
    y = np.array([classes.index(r[label].strip()) for r in keep])
    groups = np.array([r[group_column] for r in keep]) if group_column else None
    fixed = np.array([r[split_column] for r in keep]) if split_column else None
    return LabelledSet([r["id"] for r in keep], bags, y, classes, groups, fixed, dropped,
                       [r.get("path", "") for r in keep])


def _warn_case_variants(classes: list[str], rows: list[dict], label: str, root, log) -> None:
    """Labels that differ only by case (``Blast``, ``blast``) are kept as the separate classes they are
    spelled as (cytofm cannot tell which spelling is meant), and labels with surrounding spaces are read
    without them: neither silently, both named with their counts."""
    from collections import Counter

    n = Counter(r[label].strip() for r in rows)
    spaced = Counter(r[label] for r in rows if r[label] != r[label].strip())
    by_fold: dict[str, list[str]] = {}
    for c in classes:
        by_fold.setdefault(c.casefold(), []).append(c)
    groups = [g for g in by_fold.values() if len(g) > 1]
    where = f"{root}/manifest.csv: labels in '{label}'"
    if groups:
        log(f"warning: {where} that differ only by case are separate classes: "
            + "; ".join(" vs ".join(f"'{c}' ({n[c]})" for c in g) for g in groups)
            + "; write them alike if they are one class")
    if spaced:
        log(f"warning: {where} with surrounding spaces are read without them: "
            + ", ".join(f"'{c}' as '{c.strip()}' ({k})" for c, k in spaced.most_common()))
