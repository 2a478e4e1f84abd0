"""Instance standardisation shared by every MIL model: frozen features of different encoders differ in scale
by orders of magnitude (hand-crafted areas vs ViT tokens), so each model standardises its instances with the
training instances' mean and sd, kept as buffers (part of the model; identity until set)."""

from __future__ import annotations

import torch
from torch import nn


class StandardisedMIL(nn.Module):
    def __init__(self, in_dim: int):
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.in_mean.copy_(mean)
        self.in_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.in_mean) / self.in_std
