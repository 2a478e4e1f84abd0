"""KoLeo regulariser: spread the student's [CLS] embeddings uniformly over the sphere.

For L2-normalised embeddings x_1..x_n of one view on one process, with d_i the distance from x_i to its
nearest other embedding,

    L_koleo = -(1/n) sum_i log(d_i + eps)

(the Kozachenko-Leonenko differential-entropy estimator up to constants). Minimising it pushes nearest
neighbours apart, so features do not crowd into a few directions. Computed in fp32.

Reference: Sablayrolles et al., "Spreading vectors for similarity search", ICLR 2019; used on the
backbone [CLS] of each global view in DINOv2 (Oquab et al., 2024) with weight 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, D) embeddings, n >= 2 (normalised here). Returns the scalar loss."""
        if x.shape[0] < 2:
            return x.float().sum() * 0.0  # no neighbour to push away; keeps the graph for DDP
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), p=2, dim=-1, eps=self.eps)
            with torch.no_grad():
                dots = x @ x.t()
                dots.fill_diagonal_(-2.0)  # never one's own neighbour
                nearest = dots.argmax(dim=1)
            d = F.pairwise_distance(x, x[nearest], p=2, eps=self.eps)
            return -torch.log(d + self.eps).mean()
