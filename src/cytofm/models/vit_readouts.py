"""How each readout of :data:`cytofm.models.readouts.READOUTS` is computed: ``fn(vit, x) -> (B, width * D)``
from a timm ViT and normalised images, the tokens taken after the final norm."""

from __future__ import annotations

import torch
from torch import nn


def cls_token(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return vit.forward_features(x)[:, 0]


def patch_mean(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return vit.forward_features(x)[:, vit.num_prefix_tokens:].mean(dim=1)


def cls_and_patch_mean(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    t = vit.forward_features(x)
    return torch.cat([t[:, 0], t[:, vit.num_prefix_tokens:].mean(dim=1)], dim=-1)


def last4(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The [CLS] tokens of the last four blocks, each through the final norm, and the patch mean of the
    last."""
    t = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
    n = len(vit.blocks)
    outs = []
    for i, blk in enumerate(vit.blocks):
        t = blk(t)
        if i >= n - 4:
            outs.append(vit.norm(t))
    return torch.cat([o[:, 0] for o in outs] + [outs[-1][:, vit.num_prefix_tokens:].mean(dim=1)], dim=-1)
