"""Cross-validation protocols: stratified k-fold, grouped by specimen/patient, repeated over seeds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cytofm.utils.errors import UserError


class ProtocolError(UserError, ValueError):
    """The labels cannot support the requested protocol."""


@dataclass
class Split:
    seed: int
    fold: int
    train: np.ndarray
    test: np.ndarray
    groups: np.ndarray | None = None
    """The groups (per item of the whole set) this split keeps whole; inner cuts of its training part (early
    stopping, a probe's choice of C) keep them whole too."""


SPLIT_VOCABULARY = {"train": "train", "training": "train", "val": "train", "valid": "train",
                    "validation": "train", "test": "test", "testing": "test"}
"""Values a split column may hold (case and surrounding spaces ignored); validation rows train (early
stopping cuts its own validation set from the training side). Any other value is refused, never dropped
silently."""


def split_parts(values) -> np.ndarray:
    """``train``/``test`` for each value of a split column, by :data:`SPLIT_VOCABULARY`; other values are
    refused with the values found and their counts."""
    raw = [str(v).strip().lower() for v in values]
    unknown = sorted({v for v in raw if v not in SPLIT_VOCABULARY})
    if unknown:
        counts = ", ".join(f"'{v}' ({raw.count(v)})" for v in unknown[:8])
        raise ProtocolError(f"split column values not understood: {counts}; use train/training, "
                            "test/testing or val/valid/validation (validation rows train)")
    return np.array([SPLIT_VOCABULARY[v] for v in raw])


def make_splits(y: np.ndarray, folds: int = 5, seeds: tuple[int, ...] = (0, 1, 2),
                groups: np.ndarray | None = None, fixed: np.ndarray | None = None, warn=warnings.warn,
                names: list[str] | None = None) -> list[Split]:
    """Stratified (grouped when ``groups`` is given) k-fold for each seed, or one fixed split from a split
    column (:data:`SPLIT_VOCABULARY`), trained once per seed.

    A class with fewer members (or groups) than ``folds`` lowers the number of folds, with a warning; a
    single class is an error. ``names`` (class index -> label) words the messages.
    """

    def name(c):
        return names[int(c)] if names is not None and 0 <= int(c) < len(names) else c

    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ProtocolError(f"only one class ({name(classes[0]) if len(classes) else 'none'}) "
                            "among the labelled items")
    if fixed is not None:
        part = split_parts(fixed)
        tr, te = np.flatnonzero(part == "train"), np.flatnonzero(part == "test")
        if len(tr) == 0 or len(te) == 0:
            raise ProtocolError(f"the split column needs both train and test rows (found {len(tr)} train, "
                                f"{len(te)} test)")
        warn(f"a fixed split ({len(tr)} train, {len(te)} test items): folds do not apply; training is "
             f"repeated for each of the {len(seeds)} seed(s) on the same split")
        return [Split(s, 0, tr, te, groups) for s in seeds]
    per_class = counts
    if groups is not None:
        per_class = np.array([len(np.unique(groups[y == c])) for c in classes])
    k = int(min(folds, per_class.min()))
    if k < 2:
        rare = name(classes[per_class.argmin()])
        raise ProtocolError(f"class '{rare}' has {per_class.min()} "
                            f"{'group' if groups is not None else 'item'}(s); "
                            "cross-validation needs at least 2")
    if k < folds:
        rare = name(classes[per_class.argmin()])
        warn(f"class '{rare}' has only {per_class.min()} {'groups' if groups is not None else 'items'}: "
             f"using {k} folds instead of {folds}")
    out = []
    for s in seeds:
        if groups is not None:
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=s)
            it = cv.split(np.zeros(len(y)), y, groups)
        else:
            it = StratifiedKFold(n_splits=k, shuffle=True, random_state=s).split(np.zeros(len(y)), y)
        out += [Split(s, f, tr, te, groups) for f, (tr, te) in enumerate(it)]
    return out


def inner_validation(y_train: np.ndarray, seed: int, frac: float = 0.2,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/validation cut of a training fold (for early stopping); with ``groups``, one
    fold of a stratified group k-fold, so no group is on both sides."""
    if groups is not None:
        k = max(2, int(round(1 / frac)))
        if len(np.unique(groups)) < k:
            return np.arange(len(y_train)), np.array([], dtype=int)
        # a class with fewer groups than k: sklearn warns, the cut stays grouped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            train, val = next(cv.split(np.zeros(len(y_train)), y_train, groups))
        return np.sort(train), np.sort(val)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y_train):
        idx = np.flatnonzero(y_train == c)
        rng.shuffle(idx)
        n = int(round(frac * len(idx))) if len(idx) >= 5 else 0
        val += idx[:n].tolist()
    val = np.array(sorted(val), dtype=int)
    train = np.setdiff1d(np.arange(len(y_train)), val)
    return train, val
