"""The DINOv2 objective: DINO [CLS] distillation and iBOT masked-patch distillation on separate heads,
targets by Sinkhorn-Knopp centring, plus the KoLeo regulariser.

With teacher targets p (Sinkhorn-Knopp over the batch, or softmax after an EMA centre) and student
log-probabilities log q at temperature tau_s:

    L_cls   = mean over pairs (global teacher view q, student view v != q) of mean_b CE(p_q, q_v)
    L_patch = mean over global views and images of the mean CE over the image's masked tokens, the
              targets made from the teacher's tokens at the masked positions only
    L_koleo = sum over the global views of KoLeo(student backbone [CLS] of that view)
    L       = lambda_cls * L_cls + lambda_patch * L_patch + w_koleo * L_koleo

The pair and image means are the reference's normalisations (its 1/(n_global_terms + n_local_terms) and
its ``loss_scales``/``ibot_loss_scale`` factors, multiplied out). With ``centering="ema"`` the patch centre
follows the masked teacher tokens only, as in DINOv2 (iBOT's follows all tokens).

Reference: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cytofm.ssl.distillation import DistillationLoss, cross_view_ce, masked_patch_ce, mean_entropy
from cytofm.ssl.koleo_loss import KoLeoLoss
from cytofm.ssl.sinkhorn_knopp import sinkhorn_knopp


class DINOv2Loss(DistillationLoss):
    def __init__(self, out_dim: int, patch_out_dim: int, *, centering: str = "sinkhorn_knopp",
                 koleo_weight: float = 0.1, **kwargs):
        # keyword-only: its positional order differed from iBOT's before the two shared one base
        super().__init__(out_dim, patch_out_dim, centering=centering, **kwargs)
        self.koleo_weight = koleo_weight
        self.koleo = KoLeoLoss()
        # used with centering="ema" only; kept either way so a checkpoint's layout does not depend on it
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("center_patch", torch.zeros(1, patch_out_dim))

    @torch.no_grad()
    def targets(self, teacher_cls: torch.Tensor, teacher_patch: torch.Tensor, teacher_temp: float,
                teacher_patch_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher probabilities for (n_global*B, K) [CLS] and (M, K) masked-token logits."""
        if self.centering == "sinkhorn_knopp":
            return (sinkhorn_knopp(teacher_cls, teacher_temp, self.sinkhorn_iterations),
                    sinkhorn_knopp(teacher_patch, teacher_patch_temp, self.sinkhorn_iterations))
        p_cls = F.softmax((teacher_cls.float() - self.center) / teacher_temp, dim=-1)
        p_patch = F.softmax((teacher_patch.float() - self.center_patch) / teacher_patch_temp, dim=-1)
        self._update_centers(teacher_cls, teacher_patch)
        return p_cls, p_patch

    @torch.no_grad()
    def _update_centers(self, teacher_cls: torch.Tensor, teacher_patch: torch.Tensor) -> None:
        sums = [teacher_cls.float().sum(0, keepdim=True), teacher_patch.float().sum(0, keepdim=True)]
        n_cls, n_patch = teacher_cls.shape[0], teacher_patch.shape[0]
        m = self.center_momentum
        # counts known on the host: no wait for the device
        if not (dist.is_available() and dist.is_initialized()):
            self.center.mul_(m).add_(sums[0] / max(n_cls, 1), alpha=1 - m)
            if n_patch > 0:
                self.center_patch.mul_(m).add_(sums[1] / n_patch, alpha=1 - m)
            return
        # filled on the device (a tensor made from host numbers, or an element set from one, is a blocking
        # copy)
        counts = sums[0].new_full((2,), float(n_cls))
        counts[1:].fill_(float(n_patch))
        for t in (*sums, counts):
            dist.all_reduce(t)
        self.center.mul_(m).add_(sums[0] / counts[0].clamp(min=1), alpha=1 - m)
        moved = self.center_patch.clone().mul_(m).add_(sums[1] / counts[1].clamp(min=1), alpha=1 - m)
        self.center_patch.copy_(torch.where(counts[1] > 0, moved, self.center_patch))

    def forward(self, student_cls: list[torch.Tensor], student_patch: torch.Tensor, patch_image: torch.Tensor,
                teacher_cls: list[torch.Tensor], teacher_patch: torch.Tensor, n_images: int,
                teacher_temp: float, teacher_patch_temp: float,
                student_backbone_cls: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Args:
            student_cls: one (B, K) tensor per view, the global views first.
            student_patch: (M, K) student patch-head logits at the masked tokens of the global views.
            patch_image: (M,) image of each masked token, 0 .. n_global * B - 1, view-major.
            teacher_cls: one (B, K) tensor per global view.
            teacher_patch: (M, K) teacher patch-head logits at the same masked tokens (unmasked input).
            n_images: B.
            student_backbone_cls: one (B, D) backbone [CLS] per global view (before the head).

        Returns:
            ``loss``, ``loss_cls``, ``loss_patch``, ``loss_koleo`` and the mean entropy of the [CLS] targets.
        """
        p_cls, p_patch = self.targets(torch.cat(teacher_cls), teacher_patch, teacher_temp, teacher_patch_temp)
        st = self.student_temp
        s_cls = [F.log_softmax(s.float() / st, dim=-1) for s in student_cls]
        loss_cls = cross_view_ce(s_cls, list(p_cls.chunk(self.n_global)))
        loss_patch = masked_patch_ce(p_patch, student_patch, patch_image, self.n_global, n_images, st)
        loss_koleo = sum((self.koleo(c) for c in student_backbone_cls), student_cls[0].new_zeros(()).float())
        loss = self.lambda_cls * loss_cls + self.lambda_patch * loss_patch + self.koleo_weight * loss_koleo
        return {"loss": loss, "loss_cls": loss_cls.detach(), "loss_patch": loss_patch.detach(),
                "loss_koleo": loss_koleo.detach(), "teacher_entropy": mean_entropy(p_cls)}
