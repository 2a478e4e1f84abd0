"""Checkpoints (atomic, complete, resumable), released-backbone loading, and timm-layout export."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _strip(sd: dict, prefixes=("module.", "backbone.", "encoder.", "model.")) -> dict:
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


def backbone_state_from_release(obj: dict) -> dict:
    """The backbone weights of a released checkpoint, keyed like a timm ViT.

    Understands iBOT / CytoFM / DINO training checkpoints (``teacher`` or ``student`` dicts with
    ``backbone.`` / ``module.backbone.`` prefixes and ``head.`` entries), ``state_dict`` / ``model``
    wrappers, our own run checkpoints, and plain timm / DINOv2 state dicts.
    """
    if "teacher_backbone" in obj:  # our own checkpoint
        return dict(obj["teacher_backbone"])
    for key in ("teacher", "state_dict", "model", "student"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    sd = {k: v for k, v in _strip(sd).items() if not k.startswith(("head.", "mask_token", "last_layer"))}
    return sd


def load_backbone_into(vit: nn.Module, state: dict, source: str = "") -> None:
    """Strictly load backbone weights into a timm ViT, adapting DINOv2/original layouts through timm."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = checkpoint_filter_fn(state, vit)
    except Exception:
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


def timm_model_args(vit: nn.Module, layerscale: float | None = None) -> dict:
    """Arguments that make ``timm.create_model(arch, **args)`` build exactly this backbone."""
    img = vit.patch_embed.img_size
    args = {"num_classes": 0, "img_size": int(img[0] if isinstance(img, tuple | list) else img),
            "dynamic_img_size": True}
    if layerscale is not None:
        args["init_values"] = layerscale
    return args


def export_backbone(state: dict, arch: str, model_args: dict, out: str | os.PathLike, half: bool = False,
                    extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``FILE.safetensors`` (timm key layout) and ``FILE.json`` (architecture + model_args)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": arch})
    os.replace(tmp, out)
    meta = {"architecture": arch, "model_args": model_args, **(extra or {})}
    js = out.with_suffix(".json")
    js.write_text(json.dumps(meta, indent=2))
    return out, js


def export_run(run: str | Path, out: str | Path, half: bool = False) -> tuple[Path, Path, int]:
    """Export the teacher backbone of a pretraining run (folder or checkpoint.pt) as timm safetensors +
    JSON; returns both paths and the iteration."""
    from cytofm.ssl.backbone import create_vit
    from cytofm.ssl.config import PretrainConfig

    run = Path(run)
    ck_path = run / CHECKPOINT if run.is_dir() else run
    if not ck_path.is_file():
        raise FileNotFoundError(f"{ck_path}: no checkpoint found (is {run} a pretraining run directory?)")
    ck = load_checkpoint(ck_path)
    if "teacher_backbone" not in ck:
        raise ValueError(f"{ck_path}: not a cytofm pretraining checkpoint")
    cfg = PretrainConfig.model_validate(ck["config"])
    vit = create_vit(cfg.model, cfg.crops.global_size, drop_path=0.0)
    st, js = export_backbone(ck["teacher_backbone"], cfg.model.arch, timm_model_args(vit, cfg.model.layerscale), out,
                             half=half, extra={
        "source": "cytofm pretrain (iBOT teacher)", "iteration": ck["iteration"],
        "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "input_size": [3, cfg.crops.global_size, cfg.crops.global_size]},
    })
    return Path(st), Path(js), int(ck["iteration"])
