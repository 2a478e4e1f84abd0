"""Any timm model, and folders or repositories in the Hugging Face hub layout timm reads."""

from __future__ import annotations

from pathlib import Path

from cytofm.models.build import build_model, build_vit
from cytofm.models.encoder import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderError, state_hash
from cytofm.models.hub import allow_download
from cytofm.models.loading import backbone_state_from_release, is_timm_vit, load_strictly
from cytofm.models.registry import ENCODER_FAMILIES
from cytofm.models.vit import vit_encoder
from cytofm.models.weights import find_weights, load_state


def timm_encoder(arg: str) -> Encoder:
    if arg.startswith(("hf-hub:", "local-dir:")):
        source, _, where = arg.partition(":")
        return ENCODER_FAMILIES.get(source)(where)
    model, _, path = arg.partition(":")
    if not model:
        raise EncoderError("timm: give a model name, "
                           "e.g. timm:vit_small_patch16_224.augreg_in21k:/path/weights.safetensors")
    if path and Path(path).expanduser().is_dir():
        return hub_encoder("timm", f"timm:{arg}", read_hub(path), expect=model)
    if not path and not allow_download():
        raise EncoderError(f"timm:{model}: give a local weights path (timm:{model}:/path), or set "
                           "CYTOFM_ALLOW_DOWNLOAD=1 on a machine that is online to fetch it from the "
                           "Hugging Face hub")
    try:
        m = build_model(model, pretrained=not path, num_classes=0)
    except RuntimeError as e:
        raise EncoderError(f"timm: unknown model '{model}' ({e})") from None
    cfg = dict(m.pretrained_cfg)
    weights = find_weights(f"timm:{model}", path) if path else None
    if weights is not None:  # the checkpoint's own normalisation and input size, where it records them
        cfg.update(recorded_cfg(weights))
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    state = backbone_state_from_release(load_state(weights)) if weights is not None else None
    if is_timm_vit(m):
        if weights is not None and size != int(m.pretrained_cfg.get("input_size", (3, 224, 224))[-1]):
            m = build_vit(model, size)
        return vit_encoder("timm", f"timm:{arg}", m, state, path or model, size, mean, std)
    if state is not None:
        load_strictly(m, state, path)
    m.eval()
    return Encoder("timm", f"timm:{arg}", m, m.num_features, size, mean, std, state_hash(m.state_dict()),
                   is_vit=False)


def recorded_cfg(weights: Path) -> dict:
    """``pretrained_cfg`` recorded beside a weights file: ``FILE.json`` (cytofm export) or the folder's
    ``config.json`` (hub layout); empty when the checkpoint records none."""
    import json

    for meta in (weights.with_suffix(".json"), weights.parent / "config.json"):
        if meta.is_file() and meta != weights:
            try:
                pc = json.loads(meta.read_text()).get("pretrained_cfg") or {}
            except (OSError, ValueError, AttributeError):
                continue
            return {k: pc[k] for k in ("mean", "std", "input_size") if k in pc}
    return {}


# --- the hub layout (config.json + model.safetensors): local folders and hub repositories --------------
def read_hub(path: str):
    from cytofm.models.hub import read_hub_dir

    try:
        return read_hub_dir(path)
    except ValueError as e:  # HubError, UnsafeWeightsError, unreadable weights: one line naming the file
        raise EncoderError(str(e)) from None


def hub_encoder(name: str, spec: str, hm, expect: str | None = None) -> Encoder:
    """Build ``hm.architecture`` with timm from the folder's own config, then load the weights we read."""
    if expect and expect.split(".")[0] != hm.architecture.split(".")[0]:
        raise EncoderError(f"{spec}: the folder holds a '{hm.architecture}', not a '{expect}'")
    args = {**hm.model_args, "num_classes": 0}
    try:
        m = build_model(hm.architecture, pretrained=False, **args)
    except (RuntimeError, TypeError) as e:
        raise EncoderError(f"{spec}: cannot build '{hm.architecture}' with {args} ({e})") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in hm.state.items()}
    info = {"architecture": hm.architecture, "weights": hm.source}
    if is_timm_vit(m):
        pool = "mean" if hm.config.get("global_pool") == "avg" else "cls"
        return vit_encoder(name, spec, m, state, hm.source, hm.input_size, hm.mean, hm.std, pool=pool,
                           info=info)
    load_strictly(m, state, hm.source)
    m.eval()
    return Encoder(name, spec, m, m.num_features, hm.input_size, hm.mean, hm.std, state_hash(m.state_dict()),
                   info, is_vit=False)


def local_dir_encoder(arg: str) -> Encoder:
    if not arg:
        raise EncoderError("local-dir: give the folder, e.g. local-dir:/models/my_encoder")
    p = Path(arg).expanduser()
    if not p.is_dir():
        raise EncoderError(f"local-dir:{arg}: no such folder")
    return hub_encoder("local-dir", f"local-dir:{p}", read_hub(str(p)))


def hf_hub_encoder(arg: str) -> Encoder:
    from cytofm.models.hub import fetch_repo

    try:
        folder = fetch_repo(arg)
    except ValueError as e:
        raise EncoderError(str(e)) from None
    enc = hub_encoder("hf-hub", f"hf-hub:{arg}", read_hub(str(folder)))
    enc.info["repo"] = arg
    return enc
