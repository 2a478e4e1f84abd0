"""The two cross-entropy terms that iBOT and DINOv2 share, given the teacher's targets.

Methods differ in how they make targets (EMA centre + softmax, or Sinkhorn-Knopp) and in extra terms;
how targets and student logits meet is the same, so it lives here once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CENTERINGS = ("ema", "sinkhorn_knopp")


class DistillationLoss(nn.Module):
    """The settings the iBOT and DINOv2 losses share, in one order and checked once; each loss registers
    its own centre buffers (their shapes are part of its checkpoints) and adds its own terms."""

    def __init__(self, out_dim: int, patch_out_dim: int, n_global: int = 2, student_temp: float = 0.1,
                 center_momentum: float = 0.9, lambda_cls: float = 1.0, lambda_patch: float = 1.0,
                 centering: str = "ema", sinkhorn_iterations: int = 3):
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {', '.join(CENTERINGS)}, not {centering!r}")
        self.out_dim, self.patch_out_dim, self.n_global = out_dim, patch_out_dim, n_global
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.lambda_cls, self.lambda_patch = lambda_cls, lambda_patch
        self.centering, self.sinkhorn_iterations = centering, sinkhorn_iterations


def cross_view_ce(student_logp: list[torch.Tensor], teacher_probs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over pairs (q, v), v != q, of the batch-mean CE(teacher view q, student view v). The teacher
    views are the first ``len(teacher_probs)`` student views (the global crops)."""
    total = student_logp[0].new_zeros(())
    n_terms = 0
    for q, tq in enumerate(teacher_probs):
        for v, sv in enumerate(student_logp):
            if v == q:
                continue
            total = total + torch.sum(-tq * sv, dim=-1).mean()
            n_terms += 1
    return total / max(n_terms, 1)


def masked_patch_ce(teacher_probs: torch.Tensor, student_logits: torch.Tensor, image: torch.Tensor,
                    n_global: int, n_images: int, student_temp: float) -> torch.Tensor:
    """Per image the mean CE over its masked tokens, then the mean over the images of each global view
    and over the views. An image with no masked token counts as 0 in the mean (iBOT and DINOv2 both).

    Args:
        teacher_probs: (M, K) targets at the masked tokens.
        student_logits: (M, K) student logits at the same tokens.
        image: (M,) index of each token's image, 0 .. n_global * n_images - 1, view-major.
    """
    n_img = n_global * n_images
    if student_logits.shape[0] == 0:
        return student_logits.float().sum() * 0.0  # keeps the graph whole for DDP
    ce = torch.sum(-teacher_probs * F.log_softmax(student_logits.float() / student_temp, dim=-1), dim=-1)
    per_img = ce.new_zeros(n_img).index_add_(0, image, ce)
    # counts by index_add (bincount would read its input's range back to the host: a wait on a GPU)
    counts = ce.new_zeros(n_img).index_add_(0, image, torch.ones_like(ce)).clamp_(min=1)
    return (per_img / counts).reshape(n_global, n_images).mean(dim=1).mean()


@torch.no_grad()
def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
