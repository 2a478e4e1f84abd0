"""Vision Transformers as every stage uses them: the frozen-encoder wrapper around a loaded backbone and the
fused-attention switch (built by :func:`cytofm.models.build.build_vit`)."""

from __future__ import annotations

import torch
from torch import nn

from cytofm.models.encoder import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderError, ViTFeatures, state_hash
from cytofm.models.loading import adapt_timm_vit, load_strictly


def set_fused_attn(model: nn.Module, enabled: bool) -> None:
    """Use (or not) the fused scaled-dot-product attention kernel in every attention block: fused on CUDA,
    the explicit product where attention weights must be read (attention maps) or on CPUs where it is
    slower."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = enabled


def vit_encoder(name: str, spec: str, vit: torch.nn.Module, state: dict | None, source: str, img_size: int,
            mean=IMAGENET_MEAN, std=IMAGENET_STD, pool: str = "cls", info: dict | None = None,
            adapt=adapt_timm_vit, classifier=None) -> Encoder:
    """The frozen encoder around ``vit``, with ``state`` (if any) loaded by :func:`load_strictly` after the
    layout adapter ``adapt`` (timm's ViT conversions by default)."""
    if state is not None:
        load_strictly(vit, state, source, adapt=adapt, classifier=classifier)
    vit.eval()
    model = ViTFeatures(vit, pool)
    dim = ViTFeatures.dim_for(vit.embed_dim, pool)
    return Encoder(name, spec, model, dim, img_size, tuple(mean), tuple(std), state_hash(vit.state_dict()),
                   info or {})


def embed_dim_of(state: dict) -> int:
    for k in ("cls_token", "pos_embed"):
        if k in state:
            return int(state[k].shape[-1])
    raise EncoderError("cannot tell the architecture: no cls_token/pos_embed in the weights")
