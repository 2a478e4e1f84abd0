"""Baselines every encoder is compared with: a seeded random init and hand-crafted features."""

from __future__ import annotations

import torch

from cytofm.models.build import build_model
from cytofm.models.encoder import Encoder, EncoderError, state_hash
from cytofm.models.loading import is_timm_vit
from cytofm.models.vit import vit_encoder


def random_encoder(arg: str) -> Encoder:
    parts = arg.split(":") if arg else []
    arch = parts[0] if parts else "vit_small_patch16_224"
    seed = int(parts[1]) if len(parts) > 1 else 0
    torch.manual_seed(seed)
    try:
        m = build_model(arch, pretrained=False, num_classes=0)
    except RuntimeError as e:
        raise EncoderError(f"random: unknown timm architecture '{arch}' ({e})") from None
    size = int(m.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    if is_timm_vit(m):
        return vit_encoder("random", f"random:{arch}:{seed}", m, None, "", size,
                           info={"seed": seed, "arch": arch})
    m.eval()
    return Encoder("random", f"random:{arch}:{seed}", m, m.num_features, size,
                   weights_hash=state_hash(m.state_dict()), info={"seed": seed, "arch": arch}, is_vit=False)


def handcrafted_encoder(arg: str) -> Encoder:
    from cytofm.models.handcrafted import HandcraftedFeatures

    m = HandcraftedFeatures().eval()
    return Encoder("handcrafted", "handcrafted", m, m.embed_dim, 112, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                   "handcrafted-v1", is_vit=False)


def morphometrics_encoder(arg: str) -> Encoder:
    import torch.nn as nn

    from cytofm.data.cells.morphometrics import FEATURES

    return Encoder("morphometrics", "morphometrics", nn.Identity(), len(FEATURES), 0, (0.0, 0.0, 0.0),
                   (1.0, 1.0, 1.0), "morphometrics-v1", is_vit=False)
