"""Student and teacher: a maskable timm ViT and a projection head, as one module each (iBOT's shared
head, or DINOv2's separate [CLS] and patch heads)."""

from __future__ import annotations

import torch
from torch import nn

from cytofm.ssl.backbone import MaskedViT, create_vit
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.heads import IBOTHead, SeparateHeads


class IBOTNet(nn.Module):
    def __init__(self, cfg: PretrainConfig, drop_path: float | None = None, teacher: bool = False):
        super().__init__()
        self.backbone = MaskedViT(create_vit(cfg.model, cfg.crops.global_size, drop_path),
                                  cfg.model.mask_token_init)
        if cfg.head.separate:
            self.head = SeparateHeads.from_config(self.backbone.embed_dim, cfg.head)
        else:
            self.head = IBOTHead(self.backbone.embed_dim, cfg.head,
                                 cfg.head.shared_teacher if teacher else cfg.head.shared)

    def forward(self, global_crops: torch.Tensor, masks: torch.Tensor | None,
                local_crops: torch.Tensor | None, all_patch_tokens: bool = False,
                with_backbone_cls: bool = False, index: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Args:
            global_crops: (G*B, 3, H, W), view-major.
            masks: (G*B, h, w) bool or None (teacher).
            local_crops: (L*B, 3, h', w') or None.
            all_patch_tokens: return patch logits at every token (teacher) instead of masked ones only.
            index: the (image, token) index of the masked tokens, if known (else found from ``masks``).

        Returns:
            cls logits (G*B + L*B, K); patch logits ((G*B, N, K) for all tokens, else (M, K) at masked
            tokens); the (image, token) index of the masked tokens; and with ``with_backbone_cls`` the
            backbone's [CLS] of the global crops (G*B, D), before the head (KoLeo's input).
        """
        cls_g, patch_g = self.backbone(global_crops, masks)
        cls = [cls_g]
        if local_crops is not None and local_crops.shape[0] > 0:
            cls.append(self.backbone(local_crops)[0])
        cls_logits = self.head(torch.cat(cls))
        if all_patch_tokens:
            return cls_logits, self.head.forward_patch(patch_g), None
        img, tok = index if index is not None else masks.reshape(masks.shape[0], -1).nonzero(as_tuple=True)
        patch_logits = self.patch_logits(patch_g, (img, tok))
        if with_backbone_cls:
            return cls_logits, patch_logits, (img, tok), cls_g
        return cls_logits, patch_logits, (img, tok)

    @torch.no_grad()
    def teacher_outputs(self, global_crops: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor]):
        """What iBOT's loss needs of the teacher, without K logits at every token: [CLS] logits (G*B, K),
        patch logits at the (image, token) positions (M, K), and the sum of the patch logits over every
        token (K,) with the number of tokens (for the centre, which follows all of them)."""
        cls_g, patch_g = self.backbone(global_crops)
        z = self.head.embed(patch_g)
        img, tok = index
        return (self.head(cls_g), self.head.prototypes_patch(z[img, tok]), self.head.patch_logit_sum(z),
                patch_g.shape[0] * patch_g.shape[1])

    def patch_logits(self, patch_tokens: torch.Tensor,
                     index: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Patch-head logits (M, K) at the (image, token) positions only."""
        img, tok = index
        if img.numel() == 0:  # keep the patch layer in the graph for DDP
            return self.head.forward_patch(patch_tokens[:1, 0])[:0]
        return self.head.forward_patch(patch_tokens[img, tok])


def init_teacher_from_student(teacher: IBOTNet, student: IBOTNet) -> None:
    """Copy the student into the teacher. A shared teacher last layer under a separate student patch layer
    starts from the student's patch layer, as the reference's ``load_state_dict`` leaves it."""
    state = student.state_dict()
    if (getattr(teacher.head, "last_layer_patch", None) is None
            and getattr(student.head, "last_layer_patch", None) is not None):
        pre, patch = "head.last_layer.", "head.last_layer_patch."
        state = {k: v for k, v in state.items() if not k.startswith((pre, patch))}
        state.update({pre + k[len(patch):]: v for k, v in student.state_dict().items()
                      if k.startswith(patch)})
    teacher.load_state_dict(state, strict=True)


def build_student_teacher(cfg: PretrainConfig) -> tuple[IBOTNet, IBOTNet]:
    student = IBOTNet(cfg)
    teacher = IBOTNet(cfg, drop_path=0.0, teacher=True)
    if cfg.head.shared and not cfg.head.shared_teacher:
        raise ValueError("head.shared=true with head.shared_teacher=false: a teacher patch layer would have "
                         "no student layer to follow")
    init_teacher_from_student(teacher, student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher

