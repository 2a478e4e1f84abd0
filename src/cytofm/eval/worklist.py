"""A screening worklist: cases ranked by risk, quintiles, the decision at an operating point, and a seeded
quality-control draw from the cases under "no further review".

This is what deployed cytology screeners hand a lab (BD FocalPoint ranks slides into quintiles, sends a
share to "no further review" and draws up to 15% of those for a QC rescreen, and reports a process failure
apart from a negative). A case that could not be analysed is listed with its reason, after the ranked ones,
and never takes a decision: it is never a negative and never dropped. The ranking and the draw are plain
arithmetic written here so that a lab can check them by hand against the rules in the docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REVIEW, NO_REVIEW, NOT_ANALYSED = "review", "no further review", "could not analyse"
DECISIONS = (REVIEW, NO_REVIEW, NOT_ANALYSED)


@dataclass
class CaseScore:
    """One case's risk (higher: more likely abnormal), its spread over the ensemble's members, and why it
    could not be analysed (empty when it was); ``force_review``: a reason the case goes to review whatever
    its score (an unsatisfactory specimen)."""

    case: str
    score: float | None = None
    spread: float | None = None
    not_analysed: str = ""
    force_review: str = ""


def quintiles(scores: np.ndarray) -> np.ndarray:
    """Each score's risk quintile, 1 (lowest fifth) to 5 (highest): by rank from the lowest, quintile
    ``1 + floor(5 * r / n)`` for rank ``r = 0..n-1``; tied scores share the quintile of their lowest rank, so
    the order of equal scores never changes a quintile."""
    s = np.asarray(scores, float)
    n = len(s)
    if n == 0:
        return np.zeros(0, int)
    order = np.sort(s)
    first = np.searchsorted(order, s, side="left")  # the lowest rank of each score's ties
    return 1 + (5 * first) // n


def qc_draw(cases: list[str], share: float, seed: int) -> list[str]:
    """The cases drawn for a quality-control rescreen: ``ceil(share * n)`` of ``cases`` without replacement
    (so at least one where there are any and ``share > 0``), by ``numpy.random.default_rng(seed)`` over the
    cases in sorted order (the draw depends on the set and the seed, not on the order given)."""
    if not 0 <= share <= 1:
        raise ValueError(f"the QC share must be in [0, 1], not {share}")
    pool = sorted(cases)
    k = math.ceil(share * len(pool) - 1e-9)
    if k == 0:
        return []
    pick = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in pick)


def build_worklist(scores: list[CaseScore], threshold: float | None, qc_share: float = 0.1,
                   seed: int = 0) -> list[dict]:
    """Rows in worklist order: the analysed cases by score, highest first (ties by case name), ranked from 1,
    with quintile, decision and QC draw; then every case that could not be analysed, with its reason and no
    rank, score or decision but "could not analyse". ``threshold``: a case scoring at or above it is
    "review", below it "no further review" (unless ``force_review``); None: no operating point, every
    analysed case "review"."""
    done = sorted((c for c in scores if not c.not_analysed), key=lambda c: (-float(c.score), c.case))
    q = quintiles(np.array([c.score for c in done], float))
    decision = {c.case: _decision(c, threshold) for c in done}
    drawn = set(qc_draw([k for k, d in decision.items() if d == NO_REVIEW], qc_share, seed))
    rows = [{"rank": k + 1, "case": c.case, "score": round(float(c.score), 6),
             "spread": round(float(c.spread), 6) if c.spread is not None else "", "quintile": int(q[k]),
             "decision": decision[c.case], "qc_rescreen": c.case in drawn, "reason": c.force_review}
            for k, c in enumerate(done)]
    rows += [{"rank": "", "case": c.case, "score": "", "spread": "", "quintile": "", "decision": NOT_ANALYSED,
              "qc_rescreen": False, "reason": c.not_analysed}
             for c in sorted((c for c in scores if c.not_analysed), key=lambda c: c.case)]
    return rows


def _decision(c: CaseScore, threshold: float | None) -> str:
    if threshold is None or c.force_review or c.score >= threshold:
        return REVIEW
    return NO_REVIEW


def worklist_summary(rows: list[dict]) -> dict:
    """How many cases took each decision, and how many were drawn for the QC rescreen."""
    out = {d: sum(1 for r in rows if r["decision"] == d) for d in DECISIONS}
    out["qc_rescreen"] = sum(1 for r in rows if r["qc_rescreen"])
    return out
