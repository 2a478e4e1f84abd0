"""Released encoders loaded from their own checkpoints: CytoFM (paper), iBOT, UNI, DINOv2, DinoBloom,
Phikon."""

from __future__ import annotations

from cytofm.models.build import build_model, build_vit
from cytofm.models.encoder import Encoder, EncoderError
from cytofm.models.hub import allow_download
from cytofm.models.loading import adapt_timm_vit, backbone_state_from_release
from cytofm.models.vit import embed_dim_of, vit_encoder
from cytofm.models.weights import find_weights, load_state


def _release_vit(name: str, arg: str, arch_by_dim: dict[int, str], img: int = 224, **kw) -> Encoder:
    path = find_weights(name, arg or None)
    state = backbone_state_from_release(load_state(path))
    dim = embed_dim_of(state)
    if dim not in arch_by_dim:
        raise EncoderError(f"{name}: {path} holds a ViT of width {dim}; "
                           f"expected one of {sorted(arch_by_dim)}")
    return vit_encoder(name, f"{name}:{path}", build_vit(arch_by_dim[dim], img, **kw), state, str(path), img)


def cytofm_paper_encoder(arg: str) -> Encoder:
    return _release_vit("cytofm-paper", arg, {768: "vit_base_patch16_224"})


def ibot_encoder(arg: str) -> Encoder:
    return _release_vit("ibot-imagenet", arg, {384: "vit_small_patch16_224", 768: "vit_base_patch16_224",
                                               1024: "vit_large_patch16_224"})


def uni_encoder(arg: str) -> Encoder:
    path = find_weights("uni", arg or None)
    state = load_state(path)
    return vit_encoder("uni", f"uni:{path}", build_vit("vit_large_patch16_224", 224, init_values=1e-5), state,
                       str(path), 224)


DINOV2 = {"vits14": "vit_small_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2",
          "vitl14": "vit_large_patch14_dinov2", "vitg14": "vit_giant_patch14_dinov2"}
DINOV2_BY_DIM = {384: "vit_small_patch14_dinov2", 768: "vit_base_patch14_dinov2",
                 1024: "vit_large_patch14_dinov2", 1536: "vit_giant_patch14_dinov2"}


def dinov2_encoder(arg: str) -> Encoder:
    if arg in DINOV2:
        if not allow_download():
            path = find_weights(f"dinov2-{arg}", None)
        else:
            m = build_model(DINOV2[arg] + ".lvd142m", pretrained=True, num_classes=0, img_size=224,
                            dynamic_img_size=True)
            return vit_encoder("dinov2", f"dinov2:{arg}", m, None, arg, 224)
    else:
        path = find_weights("dinov2", arg or None)
    state = load_state(path)
    state = backbone_state_from_release(state)
    arch = DINOV2_BY_DIM.get(embed_dim_of(state))
    if arch is None:
        raise EncoderError(f"dinov2: unexpected width {embed_dim_of(state)} in {path}")
    return vit_encoder("dinov2", f"dinov2:{path}", build_vit(arch, 224), state, str(path), 224)


def dinobloom_encoder(arg: str) -> Encoder:
    size, _, path = arg.partition(":")
    arch = {"s": DINOV2["vits14"], "b": DINOV2["vitb14"], "l": DINOV2["vitl14"],
            "g": DINOV2["vitg14"]}.get(size)
    if arch is None:
        raise EncoderError("dinobloom: give the size, one of s, b, l, g "
                           "(e.g. dinobloom:s:/path/DinoBloom-S.pth)")
    p = find_weights(f"dinobloom-{size}", path or None)
    state = backbone_state_from_release(load_state(p))
    return vit_encoder("dinobloom", f"dinobloom:{size}:{p}", build_vit(arch, 224), state, str(p), 224)


def phikon_encoder(arg: str) -> Encoder:
    from cytofm.models.hf_vit import HF_VIT_HEADS, adapt_hf_vit, is_hf_vit

    p = find_weights("phikon", arg or None)
    state = load_state(p)
    # the Hugging Face layout it is released in, or a conversion of it to timm's
    adapt, heads = (adapt_hf_vit, HF_VIT_HEADS) if is_hf_vit(state) else (adapt_timm_vit, None)
    return vit_encoder("phikon", f"phikon:{p}", build_vit("vit_base_patch16_224", 224), state, str(p), 224,
                       adapt=adapt, classifier=heads)
