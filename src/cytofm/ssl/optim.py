"""Optimiser pieces of the iBOT recipe: parameter groups, per-parameter clipping, teacher EMA."""

from __future__ import annotations

import torch
from torch import nn

NO_DECAY_TOKENS = ("cls_token", "pos_embed", "mask_token", "reg_token", "dist_token")


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weights only: none on biases, norm parameters and learned tokens."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith(".bias") or p.ndim == 1 or leaf in NO_DECAY_TOKENS:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


def clip_gradients_per_param(model: nn.Module, clip: float) -> list[float]:
    """Scale each parameter's gradient to norm <= ``clip`` separately (DINO/iBOT), returning the norms."""
    norms = []
    for p in model.parameters():
        if p.grad is None:
            continue
        n = p.grad.detach().norm(2)
        norms.append(float(n))
        coef = clip / (n + 1e-6)
        if coef < 1:
            p.grad.mul_(coef)
    return norms


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m * teacher + (1 - m) * student, parameter by parameter."""
    t_params = [p for _, p in sorted(teacher.named_parameters())]
    s_params = [p.detach() for _, p in sorted(student.named_parameters())]
    if len(t_params) != len(s_params):
        raise RuntimeError("teacher and student differ in structure")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1 - momentum)
