"""One interface for every frozen encoder: model, evaluation transform, embedding size, input size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from cytofm.models.readouts import READOUTS
from cytofm.utils.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EncoderError(UserError, ValueError):
    """An encoder spec that cannot be satisfied; the message says why and what to do."""


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
            rgb = np.asarray(Image.fromarray(rgb).resize((self.input_size, self.input_size),
                                                         Image.Resampling.BICUBIC))
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
    """timm ViT -> a readout of its tokens after the final norm, one of
    :data:`cytofm.models.readouts.READOUTS` (``cls``, ``mean``, ``cls+mean``, ``last4``, ...)."""

    def __init__(self, vit: nn.Module, pool: str = "cls"):
        super().__init__()
        if pool not in READOUTS:
            raise ValueError(f"pool must be one of {', '.join(READOUTS.names())}, not {pool!r}")
        self.vit = vit
        self.pool = pool
        self.readout = READOUTS.get(pool)

    @staticmethod
    def dim_for(embed_dim: int, pool: str) -> int:
        return embed_dim * READOUTS.entry(pool).width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.vit, x)


def with_pool(enc: Encoder, pool: str) -> Encoder:
    """The same encoder with another ViT readout; its spec names the readout, so a feature store that
    records the spec never mixes two readouts."""
    if pool == getattr(enc.model, "pool", None) or (pool == "cls" and not isinstance(enc.model, ViTFeatures)):
        return enc  # the default readout asks nothing of encoders that are not ViTs
    if not isinstance(enc.model, ViTFeatures):
        raise ValueError(f"{enc.name}: --pool applies to ViT encoders only")
    model = ViTFeatures(enc.model.vit, pool)
    base = enc.spec.split("#pool=")[0]
    return replace(enc, model=model, embed_dim=ViTFeatures.dim_for(enc.model.vit.embed_dim, pool),
                   spec=base if pool == "cls" else f"{base}#pool={pool}", info={**enc.info, "pool": pool})
