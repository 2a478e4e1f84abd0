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


def _mlp(in_dim: int, hidden_dim: int, bottleneck_dim: int, nlayers: int) -> nn.Sequential:
    """Linear-GELU layers to the bottleneck, trunc-normal(0.02) weights and zero biases (DINO's init)."""
    dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
    layers: list[nn.Module] = []
    for i in range(nlayers):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < nlayers - 1:
            layers.append(nn.GELU())
    mlp = nn.Sequential(*layers)
    for m in mlp:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return mlp


def _embed(mlp: nn.Module, x: torch.Tensor, fp32: bool | str) -> torch.Tensor:
    """MLP and L2 normalisation. Prototype logits are cosines in [-1, 1] that the teacher divides by 0.04:
    bf16's ~0.4% steps would swamp the small differences between images early in training. ``fp32=True``
    runs the whole head in fp32; ``"last_layer"`` runs the MLP in the autocast dtype and the normalisation
    and prototype layer in fp32 (the cosines keep fp32 precision; the MLP's bf16 rounding is noise on a
    256-d direction); ``False`` runs everything under autocast."""
    if fp32 is True:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.normalize(mlp(x.float()), dim=-1, p=2)
    if fp32 == "last_layer":
        h = mlp(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.normalize(h.float(), dim=-1, p=2)
    return F.normalize(mlp(x), dim=-1, p=2)


def _prototype_logits(layer: nn.Module, z: torch.Tensor, fp32: bool | str) -> torch.Tensor:
    if fp32:
        with torch.autocast(device_type=z.device.type, enabled=False):
            return layer(z.float())
    return layer(z)


class IBOTHead(nn.Module):
    """Shared MLP; ``forward`` gives [CLS] logits, ``forward_patch`` patch logits."""

    def __init__(self, in_dim: int, cfg: HeadConfig, shared: bool | None = None):
        super().__init__()
        shared = cfg.shared if shared is None else shared
        self.fp32 = cfg.fp32
        self.mlp = _mlp(in_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.nlayers)
        self.last_layer = _prototypes(cfg.bottleneck_dim, cfg.out_dim, cfg.norm_last_layer)
        self.last_layer_patch = (None if shared
                                 else _prototypes(cfg.bottleneck_dim, cfg.out_dim, cfg.norm_last_layer))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bottleneck (the MLP is shared by [CLS] and patch tokens)."""
        return _embed(self.mlp, x, self.fp32)

    def prototypes(self, z: torch.Tensor) -> torch.Tensor:
        return _prototype_logits(self.last_layer, z, self.fp32)

    def prototypes_patch(self, z: torch.Tensor) -> torch.Tensor:
        return _prototype_logits(self.last_layer if self.last_layer_patch is None else self.last_layer_patch,
                                 z, self.fp32)

    def patch_logit_sum(self, z: torch.Tensor) -> torch.Tensor:
        """Sum of the patch logits of every row of ``z`` (..., d) as one (K,) fp32 vector: the prototype
        layer is linear without bias, so this is the layer applied to the summed embeddings, which spares
        computing K logits at every token when only their sum is needed (iBOT's patch centre)."""
        layer = self.last_layer if self.last_layer_patch is None else self.last_layer_patch
        with torch.autocast(device_type=z.device.type, enabled=False):
            return layer(z.float().reshape(-1, z.shape[-1]).sum(0, keepdim=True))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prototypes(self.embed(x))

    def forward_patch(self, x: torch.Tensor) -> torch.Tensor:
        return self.prototypes_patch(self.embed(x))

    def last_layer_parameters(self):
        yield from self.last_layer.parameters()
        if self.last_layer_patch is not None:
            yield from self.last_layer_patch.parameters()


class DINOHead(nn.Module):
    """One projection head for one kind of token: MLP -> L2-normalised bottleneck -> prototypes.
    DINOv2 gives [CLS] and patch tokens a head each (``SeparateHeads``) instead of iBOT's shared MLP."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True, fp32: bool | str = True):
        super().__init__()
        self.fp32 = fp32
        self.mlp = _mlp(in_dim, hidden_dim, bottleneck_dim, nlayers)
        self.last_layer = _prototypes(bottleneck_dim, out_dim, norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _prototype_logits(self.last_layer, _embed(self.mlp, x, self.fp32), self.fp32)


class SeparateHeads(nn.Module):
    """A [CLS] head and a patch head with nothing shared, behind IBOTHead's interface."""

    def __init__(self, cls_head: DINOHead, patch_head: DINOHead):
        super().__init__()
        self.dino = cls_head
        self.ibot = patch_head

    @classmethod
    def from_config(cls, in_dim: int, cfg: HeadConfig) -> SeparateHeads:
        def make() -> DINOHead:
            return DINOHead(in_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.nlayers,
                            cfg.norm_last_layer, cfg.fp32)
        return cls(make(), make())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dino(x)

    def forward_patch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ibot(x)

    def last_layer_parameters(self):
        yield from self.dino.last_layer.parameters()
        yield from self.ibot.last_layer.parameters()
