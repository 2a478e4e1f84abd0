"""A case's decision built from its cells (classify, then aggregate), as cytology screeners build it:
each cell's probability of an abnormal class, then per case the counts and shares by class, the abnormal
burden, and the most abnormal cells' scores. Computed per member of the ensemble, so the case's score
comes with its spread over the members, as ``predict``'s probabilities do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORES = ("burden", "top")
"""How a case's risk is read from its cells: ``burden``, the expected share of abnormal cells (the mean of
the cells' abnormal probability); ``top``, the mean abnormal probability of its ``top`` most abnormal
cells (one abnormal cell among many raises it: a finding that sends a case to review, like schistocytes)."""


@dataclass
class CaseCells:
    """One case's cells aggregated: the ensemble's mean probabilities (``mean``) and abnormal probability
    (``abnormality``) per cell, the cells in order of it (most abnormal first), the predicted classes, and
    the score per member."""

    mean: np.ndarray  # (n, C) the members' mean class probabilities
    pred: np.ndarray  # (n,) class index of ``mean``
    abnormality: np.ndarray  # (n,)
    order: np.ndarray  # (n,) cell indices, most abnormal first
    member_scores: np.ndarray  # (M,)

    @property
    def score(self) -> float:
        return float(self.member_scores.mean())

    @property
    def spread(self) -> float:
        return float(self.member_scores.std())


def case_score(p_abnormal: np.ndarray, how: str = "burden", top: int = 3) -> np.ndarray:
    """Per member (rows of ``p_abnormal`` (M, n)): the case's score (see ``SCORES``); with fewer than
    ``top`` cells, the mean over those there are."""
    if how == "burden":
        return p_abnormal.mean(1)
    if how == "top":
        k = min(top, p_abnormal.shape[1])
        return -np.sort(-p_abnormal, axis=1)[:, :k].mean(1)
    raise ValueError(f"unknown case score {how!r} (known: {', '.join(SCORES)})")


def aggregate(probs: np.ndarray, abnormal: list[int], how: str = "burden", top: int = 3) -> CaseCells:
    """One case from its cells' probabilities (M members, n cells, C classes) and the abnormal classes'
    indices: a cell's abnormal probability is the sum of its abnormal classes'."""
    if probs.shape[1] == 0:
        raise ValueError("a case with no cell has no score")
    p_abn = probs[:, :, abnormal].sum(-1)  # (M, n)
    abnormality = p_abn.mean(0)
    order = np.lexsort((np.arange(len(abnormality)), -abnormality))  # most abnormal first, ties by index
    mean = probs.mean(0)
    return CaseCells(mean, mean.argmax(1), abnormality, order, case_score(p_abn, how, top))


def case_summary(cells: CaseCells, classes: list[str], abnormal: list[int], top: int = 10) -> dict:
    """The case's row of counts and shares by predicted class, the burden (share of cells predicted
    abnormal), and its ``top`` highest abnormal probabilities (0 past its last cell): the plain
    slide model's inputs."""
    n = len(cells.pred)
    counts = np.bincount(cells.pred, minlength=len(classes))
    tops = np.zeros(top)
    best = cells.abnormality[cells.order[:top]]
    tops[:len(best)] = best
    return {"n_cells": n, **{f"n_{c}": int(counts[k]) for k, c in enumerate(classes)},
            **{f"share_{c}": round(float(counts[k] / n), 6) for k, c in enumerate(classes)},
            "abnormal_share": round(float(np.isin(cells.pred, abnormal).mean()), 6),
            **{f"top{j + 1}": round(float(v), 6) for j, v in enumerate(tops)}}
