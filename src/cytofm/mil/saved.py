"""A trained MIL model as a file and back, without pickle: the weights (the instance standardisation
included, it is part of the model) as safetensors, and the arguments that rebuild the architecture from
the registry. Loading is strict: a file of another architecture or size is refused with the keys named."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cytofm.mil.config import MILTrainConfig
from cytofm.mil.registry import MIL_MODELS
from cytofm.utils.errors import UserError
from cytofm.utils.io import atomic_path

ARCH_KEYS = ("model", "hidden", "attn_dim", "dropout")


class SavedModelError(UserError, ValueError):
    """A saved MIL model that cannot be loaded as recorded (missing file, other architecture)."""


def architecture(cfg: MILTrainConfig, in_dim: int, n_classes: int) -> dict:
    """What rebuilds the module: the registry name, its arguments, and the input and output sizes."""
    return {**{k: asdict(cfg)[k] for k in ARCH_KEYS}, "in_dim": int(in_dim), "n_classes": int(n_classes)}


def build(arch: dict) -> nn.Module:
    return MIL_MODELS.get(arch["model"])(arch["in_dim"], arch["n_classes"], arch["hidden"],
                                               arch["attn_dim"], arch["dropout"])


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_model(path: Path, arch: dict) -> nn.Module:
    """The module ``arch`` describes with the weights in ``path``, in eval mode."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise SavedModelError(f"{path}: the model file is missing (the model folder is incomplete)")
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is named, not traced
        raise SavedModelError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    model = build(arch)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        raise SavedModelError(f"{path} does not fit a {arch['model']} of {arch['in_dim']} -> "
                              f"{arch['n_classes']} (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                              f"shape {shape[:3]})")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


@torch.no_grad()
def ensemble_predict(models: list[nn.Module], bags: list[torch.Tensor]) -> tuple:
    """Each member's class probabilities (M, N, C) and the members' mean attention per bag."""
    from cytofm.mil.train import predict

    probs, attns = [], []
    for m in models:
        p, a = predict(m, bags)
        probs.append(p)
        attns.append(a)
    mean_attn = [sum(a[i] for a in attns) / len(attns) for i in range(len(bags))]
    return np.stack(probs), mean_attn
