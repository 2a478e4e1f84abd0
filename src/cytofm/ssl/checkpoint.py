"""Checkpoints (atomic, complete, resumable), released-backbone loading, and timm-layout export."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cytofm.models.loading import torch_load
from cytofm.utils.io import strict_json, with_user_mode

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    """This process's RNG states in plain tensors and tuples (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    s = {"torch": torch.get_rng_state(),
         "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
         "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state()  # this process's own device
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    kind, keys, pos, has_gauss, cached = s["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        cuda = s["cuda"]
        if isinstance(cuda, list | tuple):  # older checkpoints saved every visible device
            torch.cuda.set_rng_state_all(cuda)
        else:
            torch.cuda.set_rng_state(cuda)


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint dict, read with the restricted unpickler (:func:`cytofm.models.loading.torch_load`)."""
    obj = torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


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
    os.replace(with_user_mode(tmp), out)
    meta = {"architecture": arch, "model_args": model_args, **(extra or {})}
    js = out.with_suffix(".json")
    js.write_text(strict_json(meta))
    return out, js


def _run_teacher(run: str | Path) -> tuple[dict, str, dict, dict, int]:
    """Teacher backbone state, architecture, model_args, the JSON extras and iteration of a run."""
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
    if "model_args" in ck:
        model_args = dict(ck["model_args"])
    else:  # checkpoints written before the backbone's arguments were recorded
        model_args = timm_model_args(create_vit(cfg.model, cfg.crops.global_size, drop_path=0.0),
                                     cfg.model.layerscale)
    extra = {"source": "cytofm pretrain (iBOT teacher)", "iteration": ck["iteration"],
             "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "input_size": [3, cfg.crops.global_size, cfg.crops.global_size]}}
    return ck["teacher_backbone"], cfg.model.arch, model_args, extra, int(ck["iteration"])


def export_run(run: str | Path, out: str | Path, half: bool = False) -> tuple[Path, Path, int]:
    """Export the teacher backbone of a pretraining run (folder or checkpoint.pt) as timm safetensors +
    JSON; returns both paths and the iteration."""
    state, arch, model_args, extra, iteration = _run_teacher(run)
    st, js = export_backbone(state, arch, model_args, out, half=half, extra=extra)
    return Path(st), Path(js), iteration


def export_hub(source: str | Path, out: str | Path, half: bool = False, name: str = "") -> Path:
    """Write the hub layout timm reads (``config.json``, ``model.safetensors``, ``README.md``) into ``out``.

    ``source``: a pretraining run (folder or checkpoint.pt), or an export ``FILE.safetensors`` with its
    ``FILE.json`` (e.g. the shipped encoder), whose weights file is linked rather than re-encoded.
    """
    from cytofm.models.hub import pretrained_cfg, write_hub_dir

    source = Path(source)
    if source.suffix == ".safetensors":
        meta_path = source.with_suffix(".json")
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing (written by `cytofm export` beside {source.name})")
        meta = json.loads(meta_path.read_text())
        from safetensors import safe_open

        with safe_open(str(source), "pt") as f:
            width = int(f.get_slice("cls_token").get_shape()[-1]) if "cls_token" in f.keys() else 0
        state, weights, arch, model_args, extra = None, source, meta["architecture"], meta["model_args"], meta
    else:
        state, arch, model_args, extra, _ = _run_teacher(source)
        if half:
            state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        width, weights = int(state["cls_token"].shape[-1]) if "cls_token" in state else 0, None
    pc = extra.get("pretrained_cfg", {})
    size = int(pc.get("input_size", [3, model_args.get("img_size", 224)])[-1])
    cfg = pretrained_cfg(pc.get("mean", (0.485, 0.456, 0.406)), pc.get("std", (0.229, 0.224, 0.225)), size)
    about = (f"{extra.get('source', 'cytofm')}, iteration {extra['iteration']}." if "iteration" in extra
             else "")
    return write_hub_dir(state, arch, model_args, cfg, out, width, name=name, about=about, weights=weights)
