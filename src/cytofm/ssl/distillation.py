"""The two cross-entropy terms that iBOT and DINOv2 share, given the teacher's targets.

Methods differ in how they make targets (EMA centre + softmax, or Sinkhorn-Knopp) and in extra terms;
how targets and student logits meet is the same, so it lives here once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
