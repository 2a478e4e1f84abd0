"""timm Vision Transformers with a learned mask token for masked image modelling.

Masked patch embeddings are replaced by the mask token *before* position embeddings are added (iBOT),
so the model knows where a masked token sits but not what it held. The backbone itself stays a plain
timm ``VisionTransformer``: its state dict is the timm layout that ``cytofm export`` writes.
"""

from __future__ import annotations

import torch
from torch import nn

from cytofm.models.build import build_vit
from cytofm.ssl.config import ModelConfig


def create_vit(cfg: ModelConfig, img_size: int, drop_path: float | None = None) -> nn.Module:
    """A timm ViT without classifier, accepting any image size (global and local crops share it)."""
    kwargs = dict(drop_path_rate=cfg.drop_path if drop_path is None else drop_path)
    if cfg.layerscale is not None:
        kwargs["init_values"] = cfg.layerscale
    try:
        model = build_vit(cfg.arch, img_size, **kwargs)
    except RuntimeError as e:  # unknown model name
        raise ValueError(f"unknown timm architecture '{cfg.arch}': {e}") from None
    if not hasattr(model, "patch_embed") or not hasattr(model, "blocks"):
        raise ValueError(f"'{cfg.arch}' is not a timm VisionTransformer")
    return model


class MaskedViT(nn.Module):
    """A timm ViT plus a mask token; returns normalised [CLS] and patch tokens."""

    def __init__(self, vit: nn.Module, mask_token_init: str = "zeros"):
        super().__init__()
        self.vit = vit
        self.embed_dim = vit.embed_dim
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        if mask_token_init == "trunc_normal":
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        elif mask_token_init != "zeros":
            raise ValueError(f"mask_token_init must be 'zeros' or 'trunc_normal', not {mask_token_init!r}")

    @property
    def patch_size(self) -> int:
        p = self.vit.patch_embed.patch_size
        return p[0] if isinstance(p, tuple) else p

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, 3, H, W) images.
            mask: optional (B, H/p, W/p) bool, True where the patch is masked.

        Returns:
            [CLS] (B, D) and patch tokens (B, N, D) after the final norm.
        """
        v = self.vit
        t = v.patch_embed(x)  # (B, h, w, D) with dynamic_img_size, else (B, N, D)
        if mask is not None:
            m = mask.reshape(t.shape[:-1]).unsqueeze(-1)
            t = torch.where(m, self.mask_token.to(t.dtype).reshape((1,) * (t.dim() - 1) + (-1,)), t)
        t = v._pos_embed(t)
        t = v.patch_drop(t)
        t = v.norm_pre(t)
        for blk in v.blocks:
            t = blk(t)
        t = v.norm(t)
        return t[:, 0], t[:, self.num_prefix_tokens:]
