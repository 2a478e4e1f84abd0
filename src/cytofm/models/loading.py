"""Reading weight files safely, turning released checkpoints into timm state dicts, and loading them
strictly (:func:`load_strictly`, the one loader of every encoder family).

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
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from cytofm.models.encoder import EncoderError

log = logging.getLogger("cytofm")

TRUST_ENV = "CYTOFM_TRUST_WEIGHTS"
SAFETENSORS = ".safetensors"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "checkpoint.pt", "checkpoint_teacher.pth",
                "checkpoint.pth")


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
        f"{p}: refused to load: this pickle needs more than tensors to load ({_first_line(safe_error)}), "
        f"and a pickle like that can run code on this machine. Convert it to .safetensors, or if you trust "
        f"where it came from, allow this one file: cytofm --trust-weights {p} <command> ... "
        f"(or {TRUST_ENV}={p})") from None


def _is_pickle_refusal(e: Exception) -> bool:
    import pickle

    return (isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e)
            or "Unsupported global" in str(e))


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
# training-only entries of the SSL layouts that no backbone has: iBOT's masked_embed, a DINO head's last
# layer. Heads (``head.*``) are left to :func:`load_strictly`, which drops a classifier's keys and says so;
# DINOv2's ``mask_token`` to the timm ViT adapter (its presence marks the DINOv2 layout for timm's
# conversion).
NOT_BACKBONE = ("masked_embed", "last_layer")


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
    """The backbone weights of a released checkpoint, keyed like a timm model (heads included).

    Understands iBOT / CytoFM / DINO training checkpoints (full dicts with ``student`` (DDP
    ``module.backbone.``) and ``teacher`` (``backbone.``) entries, or one of them alone; ``key`` picks
    which network when both are there), ``state_dict`` / ``model`` wrappers, our own run checkpoints, and
    plain timm / DINOv2 state dicts. What is left beyond the backbone (a projection or classifier head) is
    for :func:`load_strictly` to judge.
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


# --- strict loading ---------------------------------------------------------------------------------
Adapter = Callable[[dict, nn.Module], dict]
SHOWN = 5  # keys named per kind of misfit


def is_timm_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """The modules whose weights a checkpoint may carry and the model may lack: timm's
    ``pretrained_cfg["classifier"]`` (``head``, ``fc``, ``classifier``, ``head.fc``, or several), and
    ``head`` for every ViT."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    c = cfg.get("classifier")
    names = [c] if isinstance(c, str) else [n for n in (c or ()) if isinstance(n, str)]
    if is_timm_vit(model):
        names.append("head")
    return tuple(dict.fromkeys(n for n in names if n))


def adapt_timm_vit(state: dict, model: nn.Module) -> dict:
    """DINOv2 / original / OpenCLIP ViT layouts -> timm's, through timm's own ``checkpoint_filter_fn``
    (which also resamples the position embedding to the model's grid). A patch embedding of another patch
    size is another architecture: left as it is, for the strict check to refuse, not resampled."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    w = state.get("patch_embed.proj.weight")
    own = getattr(getattr(getattr(model, "patch_embed", None), "proj", None), "weight", None)
    if isinstance(w, torch.Tensor) and own is not None and w.ndim == 4 and w.shape[-2:] != own.shape[-2:]:
        return state
    try:
        return checkpoint_filter_fn(dict(state), model)  # a copy: timm pops entries of the dict it is given
    except Exception:  # noqa: BLE001 - a layout timm does not know is checked key by key by the caller
        return state


BN_COUNTER = "num_batches_tracked"


def _natural(key: str) -> list:
    """``blocks.2`` before ``blocks.10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key)]


def _shape(v) -> tuple:
    return tuple(v.shape) if isinstance(v, torch.Tensor) else (type(v).__name__,)


def load_strictly(model: nn.Module, state: dict, source: str, adapt: Adapter | None = None,
                  classifier: str | Iterable[str] | None = None) -> list[str]:
    """Load ``state`` into ``model`` (built by the family) and refuse anything that does not fit.

    ``adapt(state, model)`` first turns the checkpoint's layout into the model's (e.g.
    :func:`adapt_timm_vit`, the Hugging Face ViT mapping). Then the only keys that may be left out are
    those of a classifier head the model does not have: keys under one of the ``classifier`` module names
    (default :func:`classifier_names`; ``()`` allows none); they are dropped with one info line on the
    ``cytofm`` logger naming ``source`` and the keys. Any other key the model lacks, any key of the model
    the checkpoint lacks, and any tensor of another shape raise :class:`EncoderError`, naming ``source``
    and the first keys of each kind with their counts. Returns the dropped keys.
    """
    source = str(source) or "checkpoint"
    if adapt is not None:
        state = adapt(dict(state), model)
    names = classifier_names(model) if classifier is None else (
        (classifier,) if isinstance(classifier, str) else tuple(classifier))
    own = model.state_dict()
    dropped = [k for k in state if k not in own and any(k == n or k.startswith(n + ".") for n in names)]
    gone = set(dropped)
    state = {k: v for k, v in state.items() if k not in gone}
    # a BatchNorm counter a checkpoint left out is not missing: torch sets it to 0 (it plays no part in eval)
    missing = [k for k in own if k not in state and not k.endswith(BN_COUNTER)]
    unexpected = sorted((k for k in state if k not in own), key=_natural)
    shape = [k for k in own if k in state and _shape(state[k]) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {missing[:SHOWN]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:SHOWN]}")
        if shape:
            shown = ", ".join(f"{k} {_shape(state[k])} vs {tuple(own[k].shape)}" for k in shape[:SHOWN])
            parts.append(f"shape mismatch for {len(shape)} key(s) (checkpoint vs model), e.g. [{shown}]")
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
        raise EncoderError(f"{source} does not fit the architecture: " + "; ".join(parts)
                           + f" (model: {arch})")
    model.load_state_dict(state, strict=True)
    if dropped:
        log.info("%s: dropped %d classifier key(s) the model has no head for: %s", source, len(dropped),
                 ", ".join(dropped[:SHOWN]) + (", ..." if len(dropped) > SHOWN else ""))
    return dropped
