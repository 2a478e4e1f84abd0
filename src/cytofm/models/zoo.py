"""The encoder zoo: ``create_encoder("uni:/path/to/pytorch_model.bin")`` and friends.

Every entry loads from local weights (explicit path, then ``weights.yaml``, then ``$CYTOFM_WEIGHTS``);
a hub download happens only when ``CYTOFM_ALLOW_DOWNLOAD=1`` is set and the machine is online. Missing
weights produce a message saying where to get them and under which licence or access gate.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from cytofm.models import loading
from cytofm.models.encoder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    POOLS,
    Encoder,
    EncoderError,
    ViTFeatures,
    state_hash,
    with_pool,
)
from cytofm.models.weights import weights_config, weights_dir


@dataclass
class ZooEntry:
    name: str
    syntax: str
    about: str
    weights_from: str  # where to get weights, licence / gate ("" = none needed)
    factory: Callable[[str], Encoder]


ZOO: dict[str, ZooEntry] = {}


def register(name: str, syntax: str, about: str, weights_from: str = ""):
    def deco(fn):
        ZOO[name] = ZooEntry(name, syntax, about, weights_from, fn)
        return fn

    return deco


# --- weights -----------------------------------------------------------------------------------------
def _configured_paths() -> dict[str, str]:
    p = weights_config()
    if not p.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise EncoderError(f"{p}: invalid YAML ({e})") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def find_weights(name: str, explicit: str | None) -> Path:
    """An explicit path, else ``weights.yaml`` entry ``name``, else ``$CYTOFM_WEIGHTS/name.*``."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: weights not found at {p}")
        return p
    cfg = _configured_paths()
    if name in cfg:
        p = Path(cfg[name]).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: {weights_config()} points to {p}, which does not exist")
        return p
    d = weights_dir()
    for ext in (".safetensors", ".pth", ".pt", ".bin", ""):
        p = d / f"{name}{ext}"
        if p.exists():
            return p
    entry = ZOO.get(name.split(":")[0])
    how = f" Get them from {entry.weights_from}." if entry and entry.weights_from else ""
    raise EncoderError(f"{name}: no weights given and none configured.{how} Then pass the path "
                       f"(e.g. {entry.syntax if entry else name + ':/path'}), add '{name}: /path' to {weights_config()}, "
                       f"or put the file at {d}/{name}.<ext>")


def load_state(path: str | os.PathLike) -> dict:
    """A state dict or checkpoint dict (see :mod:`cytofm.models.loading`: never runs code from a pickle)."""
    try:
        return loading.load_state(path)
    except ValueError as e:
        raise EncoderError(str(e)) from None


def _vit(arch: str, img_size: int, **kw) -> torch.nn.Module:
    return timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size, dynamic_img_size=True, **kw)


def _finish(name: str, spec: str, vit: torch.nn.Module, state: dict | None, source: str, img_size: int,
            mean=IMAGENET_MEAN, std=IMAGENET_STD, pool: str = "cls", info: dict | None = None) -> Encoder:
    from cytofm.models.loading import load_backbone_into

    if state is not None:
        try:
            load_backbone_into(vit, state, source)
        except ValueError as e:
            raise EncoderError(str(e)) from None
    vit.eval()
    model = ViTFeatures(vit, pool)
    dim = ViTFeatures.dim_for(vit.embed_dim, pool)
    return Encoder(name, spec, model, dim, img_size, tuple(mean), tuple(std), state_hash(vit.state_dict()), info or {})


def _embed_dim(state: dict) -> int:
    for k in ("cls_token", "pos_embed"):
        if k in state:
            return int(state[k].shape[-1])
    raise EncoderError("cannot tell the architecture: no cls_token/pos_embed in the weights")


def _allow_download() -> bool:
    from cytofm.models.hub import allow_download

    return allow_download()


# --- entries -----------------------------------------------------------------------------------------
@register("random", "random:<timm arch>[:<seed>]", "the architecture at a seeded random init (the baseline to beat)")
def _random(arg: str) -> Encoder:
    parts = arg.split(":") if arg else []
    arch = parts[0] if parts else "vit_small_patch16_224"
    seed = int(parts[1]) if len(parts) > 1 else 0
    torch.manual_seed(seed)
    try:
        m = timm.create_model(arch, pretrained=False, num_classes=0)
    except RuntimeError as e:
        raise EncoderError(f"random: unknown timm architecture '{arch}' ({e})") from None
    size = int(m.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    if hasattr(m, "blocks") and hasattr(m, "patch_embed"):
        return _finish("random", f"random:{arch}:{seed}", m, None, "", size, info={"seed": seed, "arch": arch})
    m.eval()
    return Encoder("random", f"random:{arch}:{seed}", m, m.num_features, size, weights_hash=state_hash(m.state_dict()),
                   info={"seed": seed, "arch": arch}, is_vit=False)


@register("handcrafted", "handcrafted", "colour, stain density, intensity and texture statistics (not learned)")
def _handcrafted(arg: str) -> Encoder:
    from cytofm.models.handcrafted import HandcraftedFeatures

    m = HandcraftedFeatures().eval()
    return Encoder("handcrafted", "handcrafted", m, m.embed_dim, 112, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                   "handcrafted-v1", is_vit=False)


@register("timm", "timm:<model>[:<path>] | timm:hf-hub:<org/repo> | timm:local-dir:<dir>",
          "any timm model, weights from a local file or hub folder (or the hub when allowed)",
          "the model's page on huggingface.co/timm (licence per model)")
def _timm(arg: str) -> Encoder:
    if arg.startswith(("hf-hub:", "local-dir:")):
        source, _, where = arg.partition(":")
        return ZOO[source].factory(where)
    model, _, path = arg.partition(":")
    if not model:
        raise EncoderError("timm: give a model name, e.g. timm:vit_small_patch16_224.augreg_in21k:/path/weights.safetensors")
    if path and Path(path).expanduser().is_dir():
        return _hub_encoder("timm", f"timm:{arg}", _read_hub(path), expect=model)
    if not path and not _allow_download():
        raise EncoderError(f"timm:{model}: give a local weights path (timm:{model}:/path), or set CYTOFM_ALLOW_DOWNLOAD=1 "
                           "on a machine that is online to fetch it from the Hugging Face hub")
    try:
        m = timm.create_model(model, pretrained=not path, num_classes=0)
    except RuntimeError as e:
        raise EncoderError(f"timm: unknown model '{model}' ({e})") from None
    cfg = dict(m.pretrained_cfg)
    weights = find_weights(f"timm:{model}", path) if path else None
    if weights is not None:  # the checkpoint's own normalisation and input size, where it records them
        cfg.update(_recorded_cfg(weights))
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    from cytofm.models.loading import backbone_state_from_release

    state = backbone_state_from_release(load_state(weights)) if weights is not None else None
    if hasattr(m, "blocks") and hasattr(m, "patch_embed"):
        if weights is not None and size != int(m.pretrained_cfg.get("input_size", (3, 224, 224))[-1]):
            m = _vit(model, size)
        return _finish("timm", f"timm:{arg}", m, state, path or model, size, mean, std)
    if state is not None:
        state = {k: v for k, v in state.items() if k in m.state_dict()}
        m.load_state_dict(state, strict=True)
    m.eval()
    return Encoder("timm", f"timm:{arg}", m, m.num_features, size, mean, std, state_hash(m.state_dict()), is_vit=False)


def _recorded_cfg(weights: Path) -> dict:
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
def _read_hub(path: str):
    from cytofm.models.hub import read_hub_dir

    try:
        return read_hub_dir(path)
    except ValueError as e:  # HubError, UnsafeWeightsError, unreadable weights: one line naming the file
        raise EncoderError(str(e)) from None


def _hub_encoder(name: str, spec: str, hm, expect: str | None = None) -> Encoder:
    """Build ``hm.architecture`` with timm from the folder's own config, then load the weights we read."""
    if expect and expect.split(".")[0] != hm.architecture.split(".")[0]:
        raise EncoderError(f"{spec}: the folder holds a '{hm.architecture}', not a '{expect}'")
    args = {**hm.model_args, "num_classes": 0}
    try:
        m = timm.create_model(hm.architecture, pretrained=False, **args)
    except (RuntimeError, TypeError) as e:
        raise EncoderError(f"{spec}: cannot build '{hm.architecture}' with {args} ({e})") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in hm.state.items()}
    info = {"architecture": hm.architecture, "weights": hm.source}
    if hasattr(m, "blocks") and hasattr(m, "patch_embed"):
        pool = "mean" if hm.config.get("global_pool") == "avg" else "cls"
        return _finish(name, spec, m, state, hm.source, hm.input_size, hm.mean, hm.std, pool=pool, info=info)
    own = m.state_dict()
    try:
        m.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    except RuntimeError as e:
        raise EncoderError(f"{hm.source} does not fit '{hm.architecture}' ({str(e).splitlines()[0]})") from None
    m.eval()
    return Encoder(name, spec, m, m.num_features, hm.input_size, hm.mean, hm.std, state_hash(m.state_dict()), info,
                   is_vit=False)


@register("local-dir", "local-dir:<dir>", "a folder in the Hugging Face hub layout (config.json + model.safetensors)")
def _local_dir(arg: str) -> Encoder:
    if not arg:
        raise EncoderError("local-dir: give the folder, e.g. local-dir:/models/my_encoder")
    p = Path(arg).expanduser()
    if not p.is_dir():
        raise EncoderError(f"local-dir:{arg}: no such folder")
    return _hub_encoder("local-dir", f"local-dir:{p}", _read_hub(str(p)))


@register("hf-hub", "hf-hub:<org/repo>", "a timm model repository on the Hugging Face hub (fetched only when allowed)",
          "the repository's page on huggingface.co (licence per model; some are gated)")
def _hf_hub(arg: str) -> Encoder:
    from cytofm.models.hub import fetch_repo

    try:
        folder = fetch_repo(arg)
    except ValueError as e:
        raise EncoderError(str(e)) from None
    enc = _hub_encoder("hf-hub", f"hf-hub:{arg}", _read_hub(str(folder)))
    enc.info["repo"] = arg
    return enc


def _release_vit(name: str, arg: str, arch_by_dim: dict[int, str], img: int = 224, **kw) -> Encoder:
    from cytofm.models.loading import backbone_state_from_release

    path = find_weights(name, arg or None)
    state = backbone_state_from_release(load_state(path))
    dim = _embed_dim(state)
    if dim not in arch_by_dim:
        raise EncoderError(f"{name}: {path} holds a ViT of width {dim}; expected one of {sorted(arch_by_dim)}")
    return _finish(name, f"{name}:{path}", _vit(arch_by_dim[dim], img, **kw), state, str(path), img)


@register("cytofm-paper", "cytofm-paper:<path>", "the released CytoFM ViT-B/16 (iBOT checkpoint dict, teacher)",
          "the CytoFM authors' release (Ivezic et al., CVPR Workshops 2025)")
def _cytofm_paper(arg: str) -> Encoder:
    return _release_vit("cytofm-paper", arg, {768: "vit_base_patch16_224"})


@register("ibot-imagenet", "ibot-imagenet:<path>", "official iBOT ImageNet ViT-S/16 or ViT-B/16 (checkpoint dict, teacher)",
          "github.com/bytedance/ibot (Apache-2.0)")
def _ibot(arg: str) -> Encoder:
    return _release_vit("ibot-imagenet", arg, {384: "vit_small_patch16_224", 768: "vit_base_patch16_224",
                                               1024: "vit_large_patch16_224"})


@register("uni", "uni:<path>", "UNI (Chen et al. 2024): DINOv2 ViT-L/16 with LayerScale, histology",
          "huggingface.co/MahmoodLab/UNI (gated: request access; CC-BY-NC-ND 4.0, non-commercial)")
def _uni(arg: str) -> Encoder:
    path = find_weights("uni", arg or None)
    state = load_state(path)
    return _finish("uni", f"uni:{path}", _vit("vit_large_patch16_224", 224, init_values=1e-5), state, str(path), 224)


DINOV2 = {"vits14": "vit_small_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2",
          "vitl14": "vit_large_patch14_dinov2", "vitg14": "vit_giant_patch14_dinov2"}
DINOV2_BY_DIM = {384: "vit_small_patch14_dinov2", 768: "vit_base_patch14_dinov2", 1024: "vit_large_patch14_dinov2",
                 1536: "vit_giant_patch14_dinov2"}


@register("dinov2", "dinov2:<vits14|vitb14|vitl14|vitg14|path>", "DINOv2 (Oquab et al. 2023), natural images, 224 px",
          "github.com/facebookresearch/dinov2 (Apache-2.0)")
def _dinov2(arg: str) -> Encoder:
    if arg in DINOV2:
        if not _allow_download():
            path = find_weights(f"dinov2-{arg}", None)
        else:
            m = timm.create_model(DINOV2[arg] + ".lvd142m", pretrained=True, num_classes=0, img_size=224, dynamic_img_size=True)
            return _finish("dinov2", f"dinov2:{arg}", m, None, arg, 224)
    else:
        path = find_weights("dinov2", arg or None)
    state = load_state(path)
    from cytofm.models.loading import backbone_state_from_release

    state = backbone_state_from_release(state)
    arch = DINOV2_BY_DIM.get(_embed_dim(state))
    if arch is None:
        raise EncoderError(f"dinov2: unexpected width {_embed_dim(state)} in {path}")
    return _finish("dinov2", f"dinov2:{path}", _vit(arch, 224), state, str(path), 224)


@register("dinobloom", "dinobloom:<s|b|l|g>:<path>", "DinoBloom (Koch et al. 2024): DINOv2 tuned on blood-cell images",
          "github.com/marrlab/DinoBloom (weights on Zenodo/Hugging Face; Apache-2.0)")
def _dinobloom(arg: str) -> Encoder:
    size, _, path = arg.partition(":")
    arch = {"s": DINOV2["vits14"], "b": DINOV2["vitb14"], "l": DINOV2["vitl14"], "g": DINOV2["vitg14"]}.get(size)
    if arch is None:
        raise EncoderError("dinobloom: give the size, one of s, b, l, g (e.g. dinobloom:s:/path/DinoBloom-S.pth)")
    p = find_weights(f"dinobloom-{size}", path or None)
    from cytofm.models.loading import backbone_state_from_release

    state = backbone_state_from_release(load_state(p))
    return _finish("dinobloom", f"dinobloom:{size}:{p}", _vit(arch, 224), state, str(p), 224)


@register("phikon", "phikon:<path>", "Phikon (Filiot et al. 2023): iBOT ViT-B/16 on TCGA histology (Hugging Face layout)",
          "huggingface.co/owkin/phikon (Owkin non-commercial licence)")
def _phikon(arg: str) -> Encoder:
    from cytofm.models.hf_vit import hf_vit_to_timm

    p = find_weights("phikon", arg or None)
    state = load_state(p)
    if any(k.startswith(("embeddings.", "encoder.layer", "vit.")) for k in state):
        state = hf_vit_to_timm(state)
    return _finish("phikon", f"phikon:{p}", _vit("vit_base_patch16_224", 224), state, str(p), 224)


@register("cytofm", "cytofm[:<export.safetensors | run dir | hub folder>]", "an encoder pretrained with cytofm (default: the one shipped)")
def _cytofm(arg: str) -> Encoder:
    import json

    if not arg:
        from cytofm.models.shipped import shipped_weights

        arg = str(shipped_weights())
    p = Path(arg).expanduser()
    if not p.exists():
        raise EncoderError(f"cytofm: {p} does not exist")
    if p.is_dir() and (p / "config.json").is_file():  # the hub layout (cytofm export --hf-dir)
        return _hub_encoder("cytofm", f"cytofm:{p}", _read_hub(str(p)))
    if p.is_dir() or p.suffix in (".pt", ".pth"):
        return _cytofm_run(p)
    meta_path = p.with_suffix(".json")
    if not meta_path.is_file():
        raise EncoderError(f"cytofm: {meta_path} is missing (written by `cytofm export` beside the .safetensors)")
    meta = json.loads(meta_path.read_text())
    args = dict(meta["model_args"])
    size = int(args.get("img_size", 224))
    vit = timm.create_model(meta["architecture"], pretrained=False, **args)
    pc = meta.get("pretrained_cfg", {})
    state = {k: v.float() for k, v in load_state(p).items()}
    return _finish("cytofm", f"cytofm:{p}", vit, state, str(p), size, tuple(pc.get("mean", IMAGENET_MEAN)),
                   tuple(pc.get("std", IMAGENET_STD)))


def _cytofm_run(p: Path) -> Encoder:
    """A pretraining run folder or its checkpoint: the teacher backbone, built from the checkpoint alone."""
    ck_path = p / "checkpoint.pt" if p.is_dir() else p
    if not ck_path.is_file():
        raise EncoderError(f"cytofm: {p} holds no checkpoint.pt (is it a pretraining run folder?)")
    ck = load_state(ck_path)
    if "teacher_backbone" not in ck:
        raise EncoderError(f"cytofm: {ck_path} is not a cytofm pretraining checkpoint (no 'teacher_backbone')")
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
            raise EncoderError(f"cytofm: {ck_path} records neither model_args nor a usable config ({e} missing); "
                               "cannot tell which architecture it holds") from None
    try:
        vit = timm.create_model(arch, pretrained=False, **args)
    except (RuntimeError, TypeError) as e:
        raise EncoderError(f"cytofm: {ck_path}: cannot build '{arch}' ({e})") from None
    size = int(args.get("img_size", 224))
    return _finish("cytofm", f"cytofm:{p}", vit, ck["teacher_backbone"], str(ck_path), size)


def create_encoder(spec: str) -> Encoder:
    """Build an encoder from a spec such as ``random:vit_small_patch16_224`` or ``uni:/w/uni.bin``; a
    ``#pool=<readout>`` suffix picks the ViT readout (``cytofm#pool=cls+mean``), as ``with_pool`` names it."""
    spec, _, pool = spec.partition("#pool=")
    if pool:
        if pool not in POOLS:
            raise EncoderError(f"unknown readout '#pool={pool}'; valid: {', '.join(POOLS)}")
        try:
            return with_pool(create_encoder(spec), pool)
        except ValueError as e:
            raise EncoderError(str(e)) from None
    name, _, arg = spec.partition(":")
    entry = ZOO.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(ZOO), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise EncoderError(f"unknown encoder '{name}'{hint}; valid: " + ", ".join(e.syntax for e in ZOO.values()))
    return entry.factory(arg)


def usable_encoders() -> list[tuple[str, str]]:
    """(spec syntax, status) for ``cytofm doctor``."""
    rows = []
    for e in ZOO.values():
        if e.name == "timm":
            status = "usable with a local weights path"
        elif e.name in ("hf-hub", "local-dir"):
            status = "usable" if e.name == "local-dir" or _allow_download() else "local cache only (CYTOFM_ALLOW_DOWNLOAD=1 to fetch)"
        elif not e.weights_from:
            status = "usable"
        else:
            try:
                find_weights(e.name if e.name != "dinobloom" else "dinobloom-s", None)
                status = "weights found"
            except EncoderError:
                status = f"needs weights: {e.weights_from}"
        rows.append((e.syntax, status))
    return rows
