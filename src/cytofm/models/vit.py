"""Switches on timm Vision Transformers that every stage uses (extraction, pretraining, benchmarks)."""

from __future__ import annotations

from torch import nn


def set_fused_attn(model: nn.Module, enabled: bool) -> None:
    """Use (or not) the fused scaled-dot-product attention kernel in every attention block: fused on CUDA,
    the explicit product where attention weights must be read (attention maps) or on CPUs where it is slower."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = enabled
