"""Encoders pretrained with cytofm: the shipped one, an export, a hub folder or a pretraining run."""

from __future__ import annotations

from pathlib import Path

from cytofm.models.build import build_model
from cytofm.models.encoder import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderError
from cytofm.models.families.timm_hub import hub_encoder, read_hub
from cytofm.models.vit import vit_encoder
from cytofm.models.weights import load_state


def cytofm_encoder(arg: str) -> Encoder:
    import json

    if not arg:
        from cytofm.models.shipped import shipped_weights

        arg = str(shipped_weights())
    p = Path(arg).expanduser()
    if not p.exists():
        raise EncoderError(f"cytofm: {p} does not exist")
    if p.is_dir() and (p / "config.json").is_file():  # the hub layout (cytofm export --hf-dir)
        return hub_encoder("cytofm", f"cytofm:{p}", read_hub(str(p)))
    if p.is_dir() or p.suffix in (".pt", ".pth"):
        return _cytofm_run(p)
    meta_path = p.with_suffix(".json")
    if not meta_path.is_file():
        raise EncoderError(f"cytofm: {meta_path} is missing "
                           "(written by `cytofm export` beside the .safetensors)")
    meta = json.loads(meta_path.read_text())
    args = dict(meta["model_args"])
    size = int(args.get("img_size", 224))
    vit = build_model(meta["architecture"], pretrained=False, **args)
    pc = meta.get("pretrained_cfg", {})
    state = {k: v.float() for k, v in load_state(p).items()}
    return vit_encoder("cytofm", f"cytofm:{p}", vit, state, str(p), size,
                       tuple(pc.get("mean", IMAGENET_MEAN)), tuple(pc.get("std", IMAGENET_STD)))


def _cytofm_run(p: Path) -> Encoder:
    """A pretraining run folder or its checkpoint: the teacher backbone, built from the checkpoint alone."""
    ck_path = p / "checkpoint.pt" if p.is_dir() else p
    if not ck_path.is_file():
        raise EncoderError(f"cytofm: {p} holds no checkpoint.pt (is it a pretraining run folder?)")
    ck = load_state(ck_path)
    if "teacher_backbone" not in ck:
        raise EncoderError(f"cytofm: {ck_path} is not a cytofm pretraining checkpoint "
                           "(no 'teacher_backbone')")
    if "model_args" in ck and "arch" in ck:
        arch, args = ck["arch"], dict(ck["model_args"])
    else:  # checkpoints written before model_args were recorded
        cfg = ck.get("config")
        try:
            arch = cfg["model"]["arch"]
            args = {"num_classes": 0, "dynamic_img_size": True, "img_size": int(cfg["crops"]["global_size"])}
            if cfg["model"].get("layerscale") is not None:
                args["init_values"] = cfg["model"]["layerscale"]
        except (TypeError, KeyError) as e:
            raise EncoderError(f"cytofm: {ck_path} records neither model_args nor a usable config "
                               f"({e} missing); cannot tell which architecture it holds") from None
    try:
        vit = build_model(arch, pretrained=False, **args)
    except (RuntimeError, TypeError) as e:
        raise EncoderError(f"cytofm: {ck_path}: cannot build '{arch}' ({e})") from None
    size = int(args.get("img_size", 224))
    return vit_encoder("cytofm", f"cytofm:{p}", vit, ck["teacher_backbone"], str(ck_path), size)
