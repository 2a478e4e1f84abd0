"""Per-iteration schedules (DINO/iBOT style): linear warm-up then half-cosine."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cytofm.ssl.config import PretrainConfig


def cosine_value(it: int, total: int, base: float, final: float, warmup: int = 0,
                 warmup_start: float = 0.0) -> float:
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


@dataclass
class Schedules:
    """Every scheduled value of a run at an iteration: lr (scaled with the total batch), weight decay,
    teacher momentum and temperatures."""

    cfg: PretrainConfig
    world: int = 1

    @property
    def lr_peak(self) -> float:
        total = self.cfg.train.batch_size * self.world
        if self.cfg.optim.lr_scaling == "sqrt_wrt_1024":
            return self.cfg.optim.base_lr * math.sqrt(total / 1024.0)
        return self.cfg.optim.base_lr * total / 256.0

    def at(self, it: int) -> dict[str, float]:
        o, lo, T = self.cfg.optim, self.cfg.loss, self.cfg.train.iterations
        return {
            "lr": cosine_value(it, T, self.lr_peak, o.min_lr, o.warmup_iters, 0.0),
            "wd": cosine_value(it, T, o.weight_decay, o.weight_decay_end),
            "momentum": cosine_value(it, T, o.momentum_teacher, o.momentum_teacher_end),
            "teacher_temp": linear_warmup_constant(it, lo.warmup_teacher_temp, lo.teacher_temp,
                                                   lo.warmup_teacher_temp_iters),
            "teacher_patch_temp": linear_warmup_constant(it, lo.warmup_teacher_patch_temp,
                                                         lo.teacher_patch_temp, lo.warmup_teacher_temp_iters),
        }
