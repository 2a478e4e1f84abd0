"""iBOT (Zhou et al., ICLR 2022) as a method: shared-MLP head, EMA centres; the patch centre follows the
teacher's patch logits at every token of the unmasked global crops, computed as the prototype layer of the
summed embeddings (it is linear), so K logits are made only at the masked tokens.

``loss.koleo_weight > 0`` adds DINOv2's KoLeo term on the student backbone's [CLS] of each global view, a
departure from iBOT kept as an option: on the CPU runs it is what carried DINOv2's margin on unseen cells
(docs/dinov2_reference.md)."""

from __future__ import annotations

from cytofm.ssl.ibot_loss import IBOTLoss
from cytofm.ssl.koleo_loss import KoLeoLoss
from cytofm.ssl.methods.base import SSLMethod, Views, teacher_spread
from cytofm.ssl.model import build_student_teacher


class IBOTMethod(SSLMethod):
    """iBOT: self-distillation on [CLS] tokens and masked patch tokens (Zhou et al., ICLR 2022)."""

    name = "ibot"
    terms = ("loss_cls", "loss_patch")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.koleo_weight = cfg.loss.koleo_weight
        self.koleo = KoLeoLoss() if self.koleo_weight > 0 else None
        if self.koleo is not None:
            self.terms = (*type(self).terms, "loss_koleo")

    def build(self):
        return build_student_teacher(self.cfg)

    def build_criterion(self):
        return IBOTLoss(**self.loss_settings())

    def losses(self, student, views: Views, sched, autocast):
        index = views.mask_index()  # the student's order
        with autocast:
            t_cls, t_patch, t_patch_sum, n_tokens = self.teacher.teacher_outputs(views.global_crops, index)
            s_cls, s_patch, _, *backbone_cls = student(views.global_crops, views.masks, views.local_crops,
                                                      with_backbone_cls=self.koleo is not None, index=index)
        n_views = 2 + (views.local_crops.shape[0] // views.n_images if views.local_crops is not None else 0)
        out = self.criterion.forward_masked(list(s_cls.float().chunk(n_views)), s_patch.float(), index[0],
                                            list(t_cls.float().chunk(2)), t_patch.float(), t_patch_sum,
                                            n_tokens, views.n_images, sched["teacher_temp"],
                                            sched["teacher_patch_temp"])
        if self.koleo is not None:
            koleo = sum(self.koleo(c) for c in backbone_cls[0].chunk(2))
            out["loss"] = out["loss"] + self.koleo_weight * koleo
            out["loss_koleo"] = koleo.detach()
        out["teacher_spread"] = teacher_spread(t_cls)
        return out

