"""Typed settings of the MIL stage: how one model is trained on bags of frozen features. A dataclass, not
a config section: the evaluation stage (``cytofm.eval.config.MilConfig``) owns what users write and fills
this from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MILTrainConfig:
    epochs: int = 50
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    patience: int = 10
    hidden: int = 256
    attn_dim: int = 128
    dropout: float = 0.25
    balanced: bool = True
    standardise: bool = True
    """Standardise instance features with the training instances' mean and sd (part of the model)."""
    seed: int = 0
    model: str = "abmil"
    """A name of ``cytofm.mil.registry.MIL_MODELS``."""
