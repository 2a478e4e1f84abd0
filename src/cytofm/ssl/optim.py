"""Optimiser pieces of the iBOT recipe: parameter groups, per-parameter clipping, teacher EMA."""

from __future__ import annotations

import torch
from torch import nn

NO_DECAY_TOKENS = ("cls_token", "pos_embed", "mask_token", "reg_token", "dist_token")


def param_groups(model: nn.Module, decay_tokens: bool = True) -> list[dict]:
    """Weight decay on weights only: none on biases and 1-D (norm) parameters, as in the reference; with
    ``decay_tokens=False`` none on the learned tokens either."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith(".bias") or p.ndim == 1 or (not decay_tokens and leaf in NO_DECAY_TOKENS):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


def clip_gradients_per_param(model: nn.Module, clip: float) -> torch.Tensor:
    """Scale each parameter's gradient to norm <= ``clip`` separately (DINO/iBOT), returning the norms.

    One fused norm over all gradients and a multiply by min(1, clip / (norm + 1e-6)): the reference's
    per-parameter ``if`` would wait for the GPU once per parameter (a factor of 1.0 leaves a gradient bitwise
    as it was)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack(torch._foreach_norm(grads, 2))
    coef = (clip / (norms + 1e-6)).clamp_(max=1.0)
    torch._foreach_mul_(grads, list(coef.unbind()))
    return norms


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m * teacher + (1 - m) * student, for every teacher parameter, paired by name.

    A teacher may have fewer parameters than its student (a shared last layer where the student has a
    separate patch layer): each teacher parameter follows the student parameter of the same name.
    """
    s_named = dict(student.named_parameters())
    t_named = dict(teacher.named_parameters())
    missing = sorted(set(t_named) - set(s_named))
    if missing:
        raise RuntimeError(f"teacher parameters without a student counterpart: {missing[:3]}")
    names = sorted(t_named)
    t_params = [t_named[n] for n in names]
    s_params = [s_named[n].detach() for n in names]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1 - momentum)
