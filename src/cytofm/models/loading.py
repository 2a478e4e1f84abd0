"""Reading weight files safely, and turning released checkpoints into timm ViT state dicts.

A ``.pt``/``.pth``/``.bin`` file is a pickle, and a pickle can run any code while it loads. Every
weights file cytofm reads goes through :func:`torch_load`, which uses PyTorch's restricted unpickler
(``weights_only=True``): tensors, containers, numbers, strings, plus ``argparse.Namespace`` (iBOT/DINO
checkpoints store their command-line arguments in one; restoring it sets attributes and calls nothing)
and numpy arrays (RNG states of older cytofm checkpoints). Anything else is refused with a message that
names the file. A user who trusts a file can allow the full unpickler for that file only, with
``cytofm --trust-weights FILE`` or ``CYTOFM_TRUST_WEIGHTS=FILE[:FILE...]``; each such load is logged.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("cytofm")

TRUST_ENV = "CYTOFM_TRUST_WEIGHTS"
SAFETENSORS = ".safetensors"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "checkpoint.pt", "checkpoint_teacher.pth", "checkpoint.pth")


class UnsafeWeightsError(ValueError):
    """A weights file that only the full (code-running) unpickler could read, and nobody trusted."""


def _numpy_globals() -> list:
    import numpy as np

    out = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    out.append(_reconstruct)
    out += [type(np.dtype(t)) for t in ("uint32", "int64", "float64", "float32", "bool")]
    return out


def _safe_globals() -> list:
    return [argparse.Namespace, *_numpy_globals()]


def trusted_paths() -> set[Path]:
    raw = os.environ.get(TRUST_ENV, "")
    return {Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()}


def trust(path: str | os.PathLike) -> None:
    """Allow the full unpickler for this one file in this process (and its children)."""
    paths = [str(p) for p in sorted(trusted_paths())] + [str(Path(path).expanduser().resolve())]
    os.environ[TRUST_ENV] = os.pathsep.join(dict.fromkeys(paths))


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("Weights only load failed"):
            return line.strip()
    return type(e).__name__


def torch_load(path: str | os.PathLike):
    """``torch.load`` on CPU with the restricted unpickler; the full one only for trusted files."""
    p = Path(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of the safe path is judged below
        safe_error = e
    if p.expanduser().resolve() in trusted_paths():
        log.warning("loading %s with the full unpickler (trusted by --trust-weights): it can run code", p)
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{p}: not a readable weights file ({_first_line(e)})") from None
    if not _is_pickle_refusal(safe_error):
        raise ValueError(f"{p}: not a readable weights file ({_first_line(safe_error)})") from None
    raise UnsafeWeightsError(
        f"{p}: refused to load: this pickle needs more than tensors to load ({_first_line(safe_error)}), and a "
        f"pickle like that can run code on this machine. Convert it to .safetensors, or if you trust where it "
        f"came from, allow this one file: cytofm --trust-weights {p} <command> ... (or {TRUST_ENV}={p})") from None


def _is_pickle_refusal(e: Exception) -> bool:
    import pickle

    return isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e) or "Unsupported global" in str(e)


def load_state(path: str | os.PathLike) -> dict:
    """A state dict or checkpoint dict from .safetensors / .pth / .pt / .bin (or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        for cand in WEIGHT_FILES:
            if (p / cand).is_file():
                p = p / cand
                break
        else:
            raise ValueError(f"{path}: no weights file in this folder (looked for {', '.join(WEIGHT_FILES)})")
    if p.suffix == SAFETENSORS:
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{p}: not a readable safetensors file ({_first_line(e)})") from None
    obj = torch_load(p)
    if not isinstance(obj, dict):
        raise ValueError(f"{p}: holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    return obj


# --- released checkpoint layouts ------------------------------------------------------------------
PREFIXES = ("module.", "backbone.", "encoder.", "model.")
# training-only entries that are not part of a plain ViT: heads, our mask token, iBOT's masked_embed
NOT_BACKBONE = ("head.", "mask_token", "masked_embed", "last_layer")


def _strip(sd: dict, prefixes=PREFIXES) -> dict:
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
        out[k] = v
    return out


def backbone_state_from_release(obj: dict, key: str = "teacher") -> dict:
    """The backbone weights of a released checkpoint, keyed like a timm ViT.

    Understands iBOT / CytoFM / DINO training checkpoints (full dicts with ``student`` (DDP
    ``module.backbone.``) and ``teacher`` (``backbone.``) entries, or one of them alone; ``key`` picks
    which network when both are there), ``state_dict`` / ``model`` wrappers, our own run checkpoints, and
    plain timm / DINOv2 state dicts.
    """
    if key not in ("teacher", "student"):
        raise ValueError(f"key must be 'teacher' or 'student', not {key!r}")
    if "teacher_backbone" in obj:  # our own checkpoint
        if key == "teacher":
            return dict(obj["teacher_backbone"])
        pre = "backbone.vit."
        return {k[len(pre):]: v for k, v in obj["student"].items() if k.startswith(pre)}
    order = (key, "state_dict", "model", "teacher" if key == "student" else "student")
    for k in order:
        if k in obj and isinstance(obj[k], dict) and obj[k]:
            obj = obj[k]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return {k: v for k, v in _strip(sd).items() if not k.startswith(NOT_BACKBONE)}


def load_backbone_into(vit: nn.Module, state: dict, source: str = "") -> None:
    """Strictly load backbone weights into a timm ViT, adapting DINOv2/original layouts through timm."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = checkpoint_filter_fn(state, vit)
    except Exception:  # noqa: BLE001 - a layout timm does not know is checked key by key below
        pass
    own = vit.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith("head") and k not in own)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:3]}")
        if shape:
            parts.append(f"shape mismatch for {shape[:3]}")
        raise ValueError(f"{source or 'checkpoint'} does not fit the architecture: " + "; ".join(parts))
    vit.load_state_dict(state, strict=True)
