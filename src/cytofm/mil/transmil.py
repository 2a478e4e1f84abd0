"""TransMIL: a transformer over a bag's instances with a pyramid position encoding (PPEG).

    h = ReLU(W x_i)                              (projection of each instance feature)
    tokens = [CLS, h_1..h_N, h_1..h_k]           (the first k repeated so N + k is a square S^2)
    tokens = Layer(tokens); tokens = PPEG(tokens, S); tokens = Layer(tokens)
    logits = W_c LayerNorm(tokens)[CLS]

PPEG folds the instance tokens into an S x S grid and adds depth-wise convolutions of sizes 7, 5 and 3,
so the output depends on instance order by design (the paper's "morphological and spatial" correlation);
the order cytofm hands it is the store's coordinate order (row-major over the tiles). Each bag is run on
its own real instances, so padding in a batch never changes a result.

Differences from the reference implementation: exact softmax attention (``nn.MultiheadAttention``) instead
of the Nystrom approximation, which only matters for bags of thousands of instances and needs another
dependency, and therefore without that layer's residual depth-wise convolution over the value sequence (a
second order-dependent term of the reference); attention dropout from the MIL config (0.25 by default,
0.1 in the reference); the [CLS] token initialised with sd 0.02 (1 in the reference); the width follows
the MIL config (256 by default, the paper's 512 with ``hidden=512``). The attention a
TransMIL run reports per instance is the [CLS] token's attention in the last layer (mean over heads) on
the real instances (a repeated token's share added to the instance it repeats), renormalised to sum to 1:
a readout for heatmaps, not part of the model's decision
the way ABMIL's weights are.

Reference: Shao et al., "TransMIL: Transformer based Correlated Multiple Instance Learning for Whole Slide
Image Classification", NeurIPS 2021.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cytofm.mil.standardise import StandardisedMIL


class TransLayer(nn.Module):
    """Pre-norm self-attention with a residual connection (the reference layer has no MLP block)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.norm(x)
        out, w = self.attn(h, h, h, need_weights=need_weights, average_attn_weights=True)
        return x + out, w


class PPEG(nn.Module):
    """Pyramid position encoding generator: identity + depth-wise 7x7, 5x5 and 3x3 convolutions of the
    grid."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj7 = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.proj5 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        cls, feat = x[:, :1], x[:, 1:]
        b, n, d = feat.shape
        grid = feat.transpose(1, 2).reshape(b, d, side, side)
        grid = grid + self.proj7(grid) + self.proj5(grid) + self.proj3(grid)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


class TransMIL(StandardisedMIL):
    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, heads: int = 8, dropout: float = 0.25):
        super().__init__(in_dim)
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.normal_(self.cls_token, std=0.02)
        self.layer1 = TransLayer(hidden, heads, dropout)
        self.ppeg = PPEG(hidden)
        self.layer2 = TransLayer(hidden, heads, dropout)
        self.norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, n_classes)

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One bag (N, D) of real instances -> logits (C,), attention (N,)."""
        n = x.shape[0]
        h = self.project(self.standardise(x)).unsqueeze(0)
        side = math.ceil(math.sqrt(n))
        extra = side * side - n
        if extra:  # fill the square by repeating instances cyclically (a bag of 1 fills it with itself)
            h = torch.cat([h, h[:, torch.arange(extra, device=h.device) % n]], dim=1)
        h = torch.cat([self.cls_token, h], dim=1)
        h, _ = self.layer1(h)
        h = self.ppeg(h, side)
        h, w = self.layer2(h, need_weights=True)
        logits = self.classifier(self.norm(h)[:, 0])[0]
        a = w[0, 0, 1:n + 1].clone()
        if extra:  # attention on a repeated token is attention on the instance it repeats
            a.index_add_(0, torch.arange(extra, device=a.device) % n, w[0, 0, n + 1:])
        return logits, a / a.sum().clamp_min(1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Args and returns as ``GatedABMIL.forward``: (B, N, D) padded bags and a (B, N) mask of real
        instances -> logits (B, C) and attention (B, N), summing to 1 over real instances, 0 on padding."""
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if not mask.any(dim=1).all():
            raise ValueError("every bag needs at least one instance")
        logits, attn = [], torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        for i in range(x.shape[0]):
            idx = mask[i].nonzero().squeeze(1)
            lg, a = self._one(x[i, idx])
            logits.append(lg)
            attn[i, idx] = a
        return torch.stack(logits), attn


def build(in_dim: int, n_classes: int, hidden: int, attn_dim: int, dropout: float) -> nn.Module:
    """The registry's builder (``cytofm.mil.registry.MIL_MODELS``)."""
    return TransMIL(in_dim, n_classes, hidden, dropout=dropout)
