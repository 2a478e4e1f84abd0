"""A non-learned baseline: colour, stain density, intensity and texture statistics per image.

Any learned encoder should beat it; if it does not, the task may be solvable from colour alone
(a stain or scanner shortcut), which is worth knowing before trusting a foundation model's number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 16


def _glcm_stats(q: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Contrast, homogeneity, energy and correlation of the grey-level co-occurrence matrix (B, 4)."""
    b, h, w = q.shape
    a = q[:, : h - dy, : w - dx].reshape(b, -1)
    c = q[:, dy:, dx:].reshape(b, -1)
    idx = a * LEVELS + c
    glcm = torch.zeros(b, LEVELS * LEVELS, device=q.device).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=torch.float32))
    glcm = glcm / glcm.sum(1, keepdim=True)
    glcm = glcm.view(b, LEVELS, LEVELS)
    i = torch.arange(LEVELS, device=q.device, dtype=torch.float32).view(1, -1, 1)
    j = i.transpose(1, 2)
    contrast = (glcm * (i - j) ** 2).sum((1, 2))
    homog = (glcm / (1 + (i - j).abs())).sum((1, 2))
    energy = (glcm**2).sum((1, 2))
    mi, mj = (glcm * i).sum((1, 2)), (glcm * j).sum((1, 2))
    si = ((glcm * (i - mi.view(-1, 1, 1)) ** 2).sum((1, 2))).sqrt()
    sj = ((glcm * (j - mj.view(-1, 1, 1)) ** 2).sum((1, 2))).sqrt()
    corr = (glcm * (i - mi.view(-1, 1, 1)) * (j - mj.view(-1, 1, 1))).sum((1, 2)) / (si * sj + 1e-6)
    return torch.stack([contrast, homog, energy, corr], 1)


class HandcraftedFeatures(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, 53) statistics."""

    embed_dim = 53

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(0, 1)
        b = x.shape[0]
        flat = x.reshape(b, 3, -1)
        q = torch.quantile(flat, torch.tensor([0.1, 0.5, 0.9], device=x.device),
                           dim=2).permute(1, 0, 2).reshape(b, 9)
        rgb = torch.cat([flat.mean(2), flat.std(2), q], 1)  # 15
        od = -torch.log10(flat * 255.0 / 256.0 + 1 / 256.0)
        od_s = torch.cat([od.mean(2), od.std(2)], 1)  # 6
        mx, mn = flat.max(1).values, flat.min(1).values
        sat = (mx - mn) / mx.clamp_min(1e-3)
        hsv = torch.stack([sat.mean(1), sat.std(1), mx.mean(1), mx.std(1)], 1)  # 4
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
        hist = torch.stack([torch.histc(g, bins=16, min=0, max=1) for g in gray]) / gray[0].numel()  # 16
        gx = gray[:, :, 1:] - gray[:, :, :-1]
        gy = gray[:, 1:, :] - gray[:, :-1, :]
        lap = F.conv2d(gray[:, None], torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]], device=x.device))
        tex = torch.stack([gx.abs().mean((1, 2)), gy.abs().mean((1, 2)), gx.std((1, 2)) + gy.std((1, 2)),
                           lap.abs().mean((1, 2, 3))], 1)  # 4
        qg = (gray * (LEVELS - 1)).round().long().clamp(0, LEVELS - 1)
        glcm = torch.cat([_glcm_stats(qg, 0, 1), _glcm_stats(qg, 1, 0)], 1)  # 8
        feats = torch.cat([rgb, od_s, hsv, hist, tex, glcm], 1)
        assert feats.shape[1] == self.embed_dim
        return feats
