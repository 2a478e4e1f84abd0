"""The iBOT projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes.

References:
    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO), ICCV 2021.
    Zhou et al., "iBOT", ICLR 2022 (a second last layer for patch tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from cytofm.ssl.config import HeadConfig


def _prototypes(in_dim: int, out_dim: int, norm_last_layer: bool) -> nn.Linear:
    layer = weight_norm(nn.Linear(in_dim, out_dim, bias=False))
    g = layer.parametrizations.weight.original0
    with torch.no_grad():
        g.fill_(1.0)
    g.requires_grad_(not norm_last_layer)
    return layer


class IBOTHead(nn.Module):
    """Shared MLP; ``forward`` gives [CLS] logits, ``forward_patch`` patch logits."""

    def __init__(self, in_dim: int, cfg: HeadConfig, shared: bool | None = None):
        super().__init__()
        shared = cfg.shared if shared is None else shared
        self.fp32 = cfg.fp32
        layers: list[nn.Module] = []
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.nlayers - 1) + [cfg.bottleneck_dim]
        for i in range(cfg.nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < cfg.nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init)
        self.last_layer = _prototypes(cfg.bottleneck_dim, cfg.out_dim, cfg.norm_last_layer)
        self.last_layer_patch = None if shared else _prototypes(cfg.bottleneck_dim, cfg.out_dim, cfg.norm_last_layer)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1, p=2)

    def _logits(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self.fp32:
            return layer(self._embed(x))
        # Prototype logits are cosines in [-1, 1] that the teacher divides by 0.04: bf16's ~0.4% steps
        # would swamp the small differences between images early in training, so the head runs in fp32.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return layer(self._embed(x.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self.last_layer, x)

    def forward_patch(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self.last_layer if self.last_layer_patch is None else self.last_layer_patch, x)

    def last_layer_parameters(self):
        yield from self.last_layer.parameters()
        if self.last_layer_patch is not None:
            yield from self.last_layer_patch.parameters()
