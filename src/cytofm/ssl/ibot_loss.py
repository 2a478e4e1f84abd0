"""The iBOT objective: [CLS] self-distillation across views plus masked patch-token distillation.

For teacher outputs t and student outputs s, with softmax temperatures tau_t (teacher, scheduled) and
tau_s (student):

    L_cls   = mean over pairs (q, v), q a global view of the teacher, v != q any student view, of
              CE( softmax((t_q - c) / tau_t), softmax(s_v / tau_s) )
    L_patch = mean over the two global views q and over images of
              sum_{masked i} CE( softmax((t_q,i - c') / tau_t'), softmax(s_q,i / tau_s) ) / #masked
    L       = lambda1 * L_patch + lambda2 * L_cls

An image with no masked token contributes 0 to L_patch but still counts in the mean (reference).
The centres c (CLS) and c' (patch) follow an EMA of the teacher outputs of the batch, all tokens
for c', averaged over every process. With ``centering="sinkhorn_knopp"`` (a departure from iBOT, taken
from DINOv2) the teacher targets are Sinkhorn-Knopp assignments over the batch instead ([CLS] of both
global views together; the masked tokens), the terms and their normalisations unchanged: on short
small-batch CPU runs the EMA centre gave targets that taught the [CLS] nothing that transfers to unseen
cells (docs/dinov2_reference.md, "What carries the CPU signal").

Reference: Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cytofm.ssl.distillation import DistillationLoss, cross_view_ce, masked_patch_ce, mean_entropy
from cytofm.ssl.sinkhorn_knopp import sinkhorn_knopp


class IBOTLoss(DistillationLoss):
    def __init__(self, out_dim: int, patch_out_dim: int, *args, **kwargs):
        super().__init__(out_dim, patch_out_dim, *args, **kwargs)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("center_patch", torch.zeros(1, 1, patch_out_dim))

    def forward(self, student_cls: list[torch.Tensor], student_patch: torch.Tensor, patch_index: torch.Tensor,
                teacher_cls: list[torch.Tensor], teacher_patch: torch.Tensor, n_images: int,
                teacher_temp: float, teacher_patch_temp: float) -> dict[str, torch.Tensor]:
        """Args:
            student_cls: one (B, K) tensor per view, the global views first.
            student_patch: (M, K) student logits at the masked tokens of the global views.
            patch_index: (image, token) pair of (M,) tensors locating each masked token; images are
                numbered 0 .. n_global * B - 1, view-major.
            teacher_cls: one (B, K) tensor per global view.
            teacher_patch: (n_global * B, N, K) teacher patch logits at every token (for the centre).
            n_images: B.
            teacher_temp, teacher_patch_temp: current teacher temperatures.

        Returns:
            ``loss``, ``loss_cls``, ``loss_patch`` and the teacher probabilities' mean entropy
            ``teacher_entropy``.
        """
        n_img = self.n_global * n_images
        flat_t = teacher_patch.reshape(n_img, -1, teacher_patch.shape[-1])
        img, tok = patch_index if student_patch.shape[0] > 0 else (None, None)
        at = flat_t[img, tok] if img is not None else flat_t[:0, 0]
        return self.forward_masked(student_cls, student_patch, img, teacher_cls, at,
                                   flat_t.float().sum(dim=(0, 1)), flat_t.shape[0] * flat_t.shape[1],
                                   n_images, teacher_temp, teacher_patch_temp)

    def forward_masked(self, student_cls: list[torch.Tensor], student_patch: torch.Tensor,
                       patch_image: torch.Tensor, teacher_cls: list[torch.Tensor],
                       teacher_patch: torch.Tensor, teacher_patch_sum: torch.Tensor,
                       teacher_patch_count: int, n_images: int, teacher_temp: float,
                       teacher_patch_temp: float) -> dict[str, torch.Tensor]:
        """:meth:`forward` from the teacher's patch logits at the masked tokens only (M, K) plus their sum
        over every token (K,) and the number of tokens, which is all the patch centre reads."""
        st = self.student_temp
        sk = self.centering == "sinkhorn_knopp"
        t_cls = (list(sinkhorn_knopp(torch.cat(teacher_cls), teacher_temp,
                                     self.sinkhorn_iterations).chunk(self.n_global))
                 if sk else [F.softmax((t.float() - self.center) / teacher_temp, dim=-1)
                             for t in teacher_cls])
        s_cls = [F.log_softmax(s.float() / st, dim=-1) for s in student_cls]
        loss_cls = cross_view_ce(s_cls, t_cls)

        # patch term at masked tokens: teacher of the same (unmasked) view vs masked student
        t_at = None
        if student_patch.shape[0] > 0:
            t_at = (sinkhorn_knopp(teacher_patch, teacher_patch_temp, self.sinkhorn_iterations) if sk else
                    F.softmax((teacher_patch.float() - self.center_patch[0]) / teacher_patch_temp, dim=-1))
        loss_patch = masked_patch_ce(t_at, student_patch, patch_image, self.n_global, n_images, st)

        loss = self.lambda_cls * loss_cls + self.lambda_patch * loss_patch
        entropy = mean_entropy(torch.cat(t_cls))
        if not sk:
            self.update_center(torch.cat(teacher_cls), teacher_patch_sum, teacher_patch_count)
        return {"loss": loss, "loss_cls": loss_cls.detach(), "loss_patch": loss_patch.detach(),
                "teacher_entropy": entropy}

    @torch.no_grad()
    def update_center(self, teacher_cls: torch.Tensor, teacher_patch_sum: torch.Tensor,
                      teacher_patch_count: int) -> None:
        """EMA of the batch mean of teacher logits ([CLS]; patch: every token), over all processes."""
        cls_sum = teacher_cls.float().sum(dim=0, keepdim=True)
        patch_sum = teacher_patch_sum.float().reshape(1, 1, -1).clone()
        n_cls, n_patch = teacher_cls.shape[0], teacher_patch_count
        if dist.is_available() and dist.is_initialized():
            # filled on the device (a tensor made from host numbers, or an element set from one, is a
            # blocking copy)
            counts = cls_sum.new_full((2,), float(n_cls))
            counts[1:].fill_(float(n_patch))
            dist.all_reduce(cls_sum)
            dist.all_reduce(patch_sum)
            dist.all_reduce(counts)
            n_cls, n_patch = counts[0], counts[1]
        m = self.center_momentum
        self.center.mul_(m).add_(cls_sum / n_cls, alpha=1 - m)
        self.center_patch.mul_(m).add_(patch_sum / n_patch, alpha=1 - m)
