"""Paired comparisons of encoders: which pairs a benchmark claims, and their per-fold differences.

A difference is computed fold by fold on identical test sets (same seed, fold and item ids on both
sides), so its mean is exactly the difference of the two means; its interval and p-value are the
corrected resampled t of ``cytofm.eval.intervals``, and the p-values of a whole table are Holm-adjusted.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from cytofm.eval.intervals import Interval, corrected_t_interval


class PairingError(ValueError):
    """Two runs whose folds do not hold the same items cannot be compared fold by fold."""


def claimed_pairs(encoders: list[str], baselines: list[str],
                  explicit: list[str] | None = None) -> list[tuple[str, str]]:
    """(A, B) pairs to test, A - B.

    ``explicit`` entries read ``"A vs B"``. Otherwise: every encoder against the first one, and every
    encoder that is not a baseline against each baseline (``baselines`` are fnmatch patterns such as
    ``random:*``); duplicates and self-pairs are dropped.
    """
    if explicit is not None:
        out = []
        for e in explicit:
            a, sep, b = e.partition(" vs ")
            if not sep or a.strip() not in encoders or b.strip() not in encoders:
                raise ValueError(f"comparison '{e}': write 'A vs B' "
                                 f"with A and B among the encoders {encoders}")
            out.append((a.strip(), b.strip()))
        return out
    if not encoders:
        return []
    is_base = [any(fnmatch.fnmatchcase(e, p) for p in baselines) for e in encoders]
    pairs = [(e, encoders[0]) for e in encoders[1:]]
    for b, base in zip(encoders, is_base, strict=True):
        if base:
            pairs += [(e, b) for e, eb in zip(encoders, is_base, strict=True) if not eb and e != b]
    seen, out = set(), []
    for a, b in pairs:
        if (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def paired_fold_difference(folds_a: list[dict], folds_b: list[dict], metric: str,
                           test_train_ratio: float) -> Interval:
    """Mean over folds of metric(A) - metric(B), matched on (seed, fold) with identical test ids."""
    b = {(r["seed"], r["fold"]): r for r in folds_b}
    if len(b) != len(folds_a):
        raise PairingError(f"{len(folds_a)} folds against {len(b)}")
    d = []
    for r in folds_a:
        other = b.get((r["seed"], r["fold"]))
        if other is None or other["test_ids"] != r["test_ids"]:
            raise PairingError(f"seed {r['seed']} fold {r['fold']}: the two runs tested different items")
        d.append(float(r[metric]) - float(other[metric]))
    return corrected_t_interval(np.array(d), test_train_ratio)
