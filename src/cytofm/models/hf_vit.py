"""Hugging Face ``transformers`` ViT state dicts (e.g. Owkin Phikon) -> timm ViT key layout."""

from __future__ import annotations

import re

import torch
from torch import nn

# what a ``ViTModel`` / ``ViTForImageClassification`` has beyond the timm backbone: the pooler (dense + tanh
# on [CLS]) and the classifier; keys under these are dropped (and said) by ``load_strictly``, nothing else
HF_VIT_HEADS = ("pooler", "classifier", "head")
# training-only: the mask token of a ViTModel built with use_mask_token=True (no timm backbone has one)
HF_TRAINING_ONLY = ("embeddings.mask_token",)


def is_hf_vit(sd: dict) -> bool:
    return any(k.startswith(("embeddings.", "encoder.layer", "vit.")) for k in sd)


def hf_vit_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``ViTModel`` keys to timm's and fuse the separate q, k, v projections into ``qkv``.

    Keys the mapping does not know (the pooler, a classifier, anything else) keep their names, so that a
    strict load drops the heads and refuses the rest."""
    sd = {k.removeprefix("vit.").removeprefix("model."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    simple = {
        "embeddings.cls_token": "cls_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    per_layer = {
        "attention.output.dense": "attn.proj",
        "layernorm_before": "norm1",
        "layernorm_after": "norm2",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
    }
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k in HF_TRAINING_ONLY:
            continue
        if k in simple:
            out[simple[k]] = v
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", k)
        if not m:
            out[k] = v  # a head (judged by the loader) or a key of another layout (refused by it)
            continue
        i, name, kind = int(m.group(1)), m.group(2), m.group(3)
        q = re.match(r"attention\.attention\.(query|key|value)$", name)
        if q:
            qkv.setdefault((i, kind), {})[q.group(1)] = v
        elif name in per_layer:
            out[f"blocks.{i}.{per_layer[name]}.{kind}"] = v
        else:
            out[k] = v
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"encoder.layer.{i}.attention.attention.{n}.{kind}": t for n, t in parts.items()})
            continue  # an incomplete attention: its keys stay, for the loader to name
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    return out


def adapt_hf_vit(sd: dict, model: nn.Module) -> dict:
    """The layout adapter of the Hugging Face ViT: the key mapping, then timm's ViT conversions."""
    from cytofm.models.loading import adapt_timm_vit

    return adapt_timm_vit(hf_vit_to_timm(sd), model)


def timm_to_hf_vit(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse mapping, used by tests to write checkpoints in the Hugging Face layout."""
    inv_simple = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    inv_layer = {"attn.proj": "attention.output.dense", "norm1": "layernorm_before",
                 "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    out = {}
    for k, v in sd.items():
        if k in inv_simple:
            out[inv_simple[k]] = v
            continue
        m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if not m:
            continue
        i, name, kind = m.groups()
        if name == "attn.qkv":
            for part, t in zip(("query", "key", "value"), v.chunk(3, 0), strict=True):
                out[f"encoder.layer.{i}.attention.attention.{part}.{kind}"] = t
        elif name in inv_layer:
            out[f"encoder.layer.{i}.{inv_layer[name]}.{kind}"] = v
    return out
