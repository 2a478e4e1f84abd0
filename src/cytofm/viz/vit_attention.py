"""Last-layer [CLS]-to-patch attention of a timm ViT (Caron et al., DINO, ICCV 2021, Fig. 1).

The attention matrix only exists when the block's fused kernel is off, so the kernel is switched off for
the one forward pass that takes the map and restored afterwards.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


def find_vit(model: nn.Module) -> nn.Module:
    """The timm VisionTransformer inside an encoder wrapper (``ViTFeatures.vit``) or the model itself."""
    for m in (getattr(model, "vit", None), model):
        if m is not None and hasattr(m, "blocks") and hasattr(m, "patch_embed"):
            return m
    raise ValueError("attention maps need a timm ViT (this encoder has no transformer blocks)")


@contextlib.contextmanager
def _capture_last_attention(vit: nn.Module):
    attn = vit.blocks[-1].attn
    if not hasattr(attn, "attn_drop"):
        raise ValueError(f"{type(attn).__name__}: cannot read its attention matrix")
    fused = getattr(attn, "fused_attn", False)
    store: dict[str, torch.Tensor] = {}
    hook = attn.attn_drop.register_forward_hook(lambda m, i, o: store.__setitem__("a", i[0].detach()))
    attn.fused_attn = False
    try:
        yield store
    finally:
        hook.remove()
        attn.fused_attn = fused


@torch.no_grad()
def cls_attention(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, gh, gw) attention of the [CLS] query to each patch token in the last block.

    Rows sum to one over all keys, prefix tokens (CLS, registers) included, so a map sums to a little
    less than one; it is not renormalised so that heads stay comparable.
    """
    vit = find_vit(model)
    was_training = vit.training
    vit.eval()
    try:
        with _capture_last_attention(vit) as store:
            vit.forward_features(x)
    finally:
        vit.train(was_training)
    a = store["a"].float()  # (B, heads, N, N)
    n_prefix = getattr(vit, "num_prefix_tokens", 1)
    p = vit.patch_embed.patch_size
    p = p[0] if isinstance(p, tuple | list) else p
    gh, gw = x.shape[-2] // p, x.shape[-1] // p
    return a[:, :, 0, n_prefix:].reshape(a.shape[0], a.shape[1], gh, gw)


def tile_positions(length: int, size: int) -> list[int]:
    """Non-overlapping tiles, the last one shifted back to end at the border."""
    if length <= size:
        return [0]
    pos = list(range(0, length - size + 1, size))
    if pos[-1] + size < length:
        pos.append(length - size)
    return pos


def attention_map(encoder, rgb: np.ndarray, device: torch.device | str = "cpu", tiles: bool | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel [CLS] attention over an image: (heads, H, W) and the head mean (H, W).

    Single cells (no side above twice the encoder's input) are resized whole to the input size, as for
    feature extraction; larger fields are cut into input-size tiles at native resolution, as `prepare`
    cuts them, and each tile's map is painted back in place (overlaps averaged). Each tile's map is
    divided by its sum, so every tile carries the same mass.
    """
    h, w = rgb.shape[:2]
    s = encoder.input_size
    if tiles is None:
        tiles = max(h, w) > 2 * s
    if not tiles:
        t = encoder.preprocess(rgb)[None].to(device)
        a = cls_attention(encoder.model, t)[0]
        a = a / a.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        up = torch.nn.functional.interpolate(a[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        up = up * (a.sum(dim=(-2, -1), keepdim=True) / up.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12))
        heads = up.cpu().numpy()
        return heads, heads.mean(0)
    if h < s or w < s:
        pad = np.full((max(h, s), max(w, s), 3), 255, np.uint8)
        pad[:h, :w] = rgb
        heads, _ = attention_map(encoder, pad, device, tiles=True)
        heads = heads[:, :h, :w]
        return heads, heads.mean(0)
    acc = None
    count = np.zeros((h, w), np.float32)
    for y in tile_positions(h, s):
        for x in tile_positions(w, s):
            t = encoder.preprocess(rgb[y:y + s, x:x + s])[None].to(device)
            a = cls_attention(encoder.model, t)[0]
            a = a / a.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
            up = torch.nn.functional.interpolate(a[None], size=(s, s), mode="nearest")[0].cpu().numpy()
            if acc is None:
                acc = np.zeros((a.shape[0], h, w), np.float32)
            acc[:, y:y + s, x:x + s] += up
            count[y:y + s, x:x + s] += 1
    heads = acc / np.maximum(count, 1)[None]
    return heads, heads.mean(0)
