"""DINOv2 (Oquab et al., TMLR 2024) as a method: separate [CLS] and patch heads, Sinkhorn-Knopp targets,
KoLeo on the student's backbone [CLS]; the teacher's patch head runs at the masked positions only (the
only tokens with a target, and the ones Sinkhorn-Knopp balances over).

Not reproduced from the reference training code (docs/dinov2_reference.md): layer-wise lr decay, the
patch-embedding lr multiplier, and the batch-stratified mask ratios (each crop here draws its ratio alone,
with the same marginal distribution: half unmasked, half U(0.1, 0.5)). The sqrt batch-size lr rule is
``optim.lr_scaling: sqrt_wrt_1024``.
"""

from __future__ import annotations

import torch

from cytofm.ssl.dinov2_loss import DINOv2Loss
from cytofm.ssl.methods.base import SSLMethod, Views, teacher_spread
from cytofm.ssl.model import build_student_teacher


class DINOv2Method(SSLMethod):
    """DINOv2: iBOT with KoLeo, Sinkhorn-Knopp centring and separate heads (Oquab et al., TMLR 2024)."""

    name = "dinov2"
    terms = ("loss_cls", "loss_patch", "loss_koleo")

    def build(self):
        return build_student_teacher(self.cfg)  # separate heads, or one shared head (head.separate: false)

    def build_criterion(self):
        return DINOv2Loss(**self.loss_settings(), koleo_weight=self.cfg.loss.koleo_weight)

    def losses(self, student, views: Views, sched, autocast):
        B = views.n_images
        with autocast:
            s_cls, s_patch, (img, tok), s_backbone_cls = student(
                views.global_crops, views.masks, views.local_crops, with_backbone_cls=True,
                index=views.mask_index())
            with torch.no_grad():
                t_cls_tokens, t_patch_tokens = self.teacher.backbone(views.global_crops)
                t_cls = self.teacher.head(t_cls_tokens)
                t_patch = self.teacher.patch_logits(t_patch_tokens, (img, tok))
        n_views = 2 + (views.local_crops.shape[0] // B if views.local_crops is not None else 0)
        out = self.criterion(list(s_cls.float().chunk(n_views)), s_patch.float(), img,
                             list(t_cls.float().chunk(2)), t_patch.float(), B, sched["teacher_temp"],
                             sched["teacher_patch_temp"], list(s_backbone_cls.chunk(2)))
        out["teacher_spread"] = teacher_spread(t_cls)
        return out
