"""Gated attention-based multiple-instance learning (ABMIL).

    h_i = phi(x_i)                                  (projection of each instance feature)
    a_i = softmax_i( w^T (tanh(V h_i) * sigmoid(U h_i)) )   over the real instances of the bag
    z   = sum_i a_i h_i,   logits = W_c z

Padded instances get a score of -inf, so a padded bag gives exactly the output of the unpadded one, and
the weighted sum makes the output independent of instance order.

Reference: Ilse, Tomczak & Welling, "Attention-based Deep Multiple Instance Learning", ICML 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from cytofm.mil.standardise import StandardisedMIL


class GatedABMIL(StandardisedMIL):
    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, attn_dim: int = 128,
                 dropout: float = 0.25):
        super().__init__(in_dim)
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attn_v = nn.Linear(hidden, attn_dim)
        self.attn_u = nn.Linear(hidden, attn_dim)
        self.attn_w = nn.Linear(attn_dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, N, D) instance features, padded to the longest bag.
            mask: (B, N) bool, True for real instances (default: all real).

        Returns:
            logits (B, C) and attention (B, N), which sums to 1 over each bag's real instances and is 0
            on padding.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if not mask.any(dim=1).all():
            raise ValueError("every bag needs at least one instance")
        h = self.project(self.standardise(x))
        scores = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        attn = torch.softmax(scores, dim=1)
        z = torch.einsum("bn,bnd->bd", attn, h)
        return self.classifier(self.dropout(z)), attn


def pad_bags(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of different sizes into (B, N_max, D) with a (B, N_max) mask of real instances."""
    n = max(b.shape[0] for b in bags)
    d = bags[0].shape[1]
    x = bags[0].new_zeros(len(bags), n, d)
    mask = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : b.shape[0]] = b
        mask[i, : b.shape[0]] = True
    return x, mask


def build(in_dim: int, n_classes: int, hidden: int, attn_dim: int, dropout: float) -> nn.Module:
    """The registry's builder (``cytofm.mil.registry.MIL_MODELS``)."""
    return GatedABMIL(in_dim, n_classes, hidden, attn_dim, dropout)
