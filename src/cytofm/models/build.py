"""The one place a network is built from its timm name (``timm.create_model``), as timm splits names,
building and weights: the registry (:mod:`cytofm.models.registry`) names encoder families, this module
builds networks, :mod:`cytofm.models.weights` finds and reads their weights. One builder, so an argument
every caller needs (or a change of timm's signature) is made once."""

from __future__ import annotations

import timm
from torch import nn


def build_model(arch: str, **kwargs) -> nn.Module:
    """``arch`` built by timm with ``kwargs`` (``pretrained``, ``num_classes``, ``img_size``, ...); timm's
    own errors (an unknown name: RuntimeError) reach the caller, which knows what to tell the user."""
    return timm.create_model(arch, **kwargs)


def build_vit(arch: str, img_size: int, **kw) -> nn.Module:
    """A timm ViT without classifier that accepts any input size."""
    return build_model(arch, pretrained=False, num_classes=0, img_size=img_size, dynamic_img_size=True, **kw)
