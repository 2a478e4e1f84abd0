"""One interface for every frozen encoder: model, evaluation transform, embedding size, input size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Encoder:
    """A frozen feature extractor and the preprocessing it was trained with.

    ``model(x)`` maps (B, 3, S, S) normalised images to (B, D) features.
    """

    name: str
    spec: str
    model: nn.Module
    embed_dim: int
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_hash: str = ""
    info: dict = field(default_factory=dict)
    is_vit: bool = True

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float: resized to the native input size, then normalised.

        Patches and cell crops are resized whole (no centre crop): cutting the border of a single-cell
        image would cut the cell.
        """
        if rgb.shape[0] != self.input_size or rgb.shape[1] != self.input_size:
            rgb = np.asarray(Image.fromarray(rgb).resize((self.input_size, self.input_size), Image.Resampling.BICUBIC))
        x = torch.tensor(rgb).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def state_hash(state: dict) -> str:
    """A short hash of every tensor of a state dict (names, shapes and values), independent of key order."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        if isinstance(v, torch.Tensor):
            h.update(k.encode())
            h.update(str(v.dtype).encode())
            h.update(memoryview(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
            h.update(str(tuple(v.shape)).encode())
    return h.hexdigest()[:16]


class ViTFeatures(nn.Module):
    """timm ViT -> [CLS] token after the final norm (the CytoFM/UNI/iBOT evaluation feature)."""

    def __init__(self, vit: nn.Module, pool: str = "cls"):
        super().__init__()
        self.vit = vit
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.vit.forward_features(x)
        if self.pool == "cls":
            return t[:, 0]
        if self.pool == "mean":
            return t[:, self.vit.num_prefix_tokens:].mean(dim=1)
        # cls + mean of patch tokens (DINOv2 linear-probe convention)
        return torch.cat([t[:, 0], t[:, self.vit.num_prefix_tokens:].mean(dim=1)], dim=-1)
