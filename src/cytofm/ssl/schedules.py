"""Per-iteration schedules (DINO/iBOT style): linear warm-up then half-cosine."""

from __future__ import annotations

import math


def cosine_value(it: int, total: int, base: float, final: float, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """Value at iteration ``it`` of ``total``: linear ``warmup_start -> base`` over ``warmup`` iterations,
    then ``final + (base - final) * (1 + cos(pi * t / T)) / 2`` with ``t`` counted from the warm-up's end
    and ``T = total - warmup``. Past the end, ``final``.
    """
    if it < warmup:  # numpy.linspace(warmup_start, base, warmup)[it]
        return warmup_start + (base - warmup_start) * it / (warmup - 1) if warmup > 1 else warmup_start
    span = max(total - warmup, 1)
    t = it - warmup
    if t >= span:
        return final
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / span))


def linear_warmup_constant(it: int, start: float, end: float, warmup: int) -> float:
    """``numpy.linspace(start, end, warmup)[it]``, then ``end`` (teacher temperatures)."""
    if warmup <= 0 or it >= warmup:
        return end
    return start + (end - start) * it / (warmup - 1) if warmup > 1 else start
