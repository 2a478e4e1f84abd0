"""One strict loader for every encoder family (``cytofm.models.loading.load_strictly``): a checkpoint of
another architecture, written here in the family's official layout, is refused with the keys that do not
fit named; only a classifier head the model lacks may be left out, and that is said in the log.

The release families build their ViT-B/L with one block (every block has the same keys), so that the
whole file runs in seconds on a CPU."""

from __future__ import annotations

import argparse
import json
import logging
import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from cytofm.models.build import build_vit
from cytofm.models.hf_vit import timm_to_hf_vit
from cytofm.models.loading import adapt_timm_vit, load_strictly
from cytofm.models.zoo import EncoderError, create_encoder


def weights(arch: str, seed: int = 0, **kw) -> dict:
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, **kw).state_dict()


def keys_of(arch: str, **kw) -> dict:
    """The model's keys and shapes, without building its weights."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in timm.create_model(arch, pretrained=False,
                                                                **kw).state_dict().items()}


def teacher_layout(sd: dict, head: bool = True) -> dict:
    """An iBOT / DINO / DinoBloom checkpoint: the teacher's backbone under ``backbone.``, its projection
    head."""
    extra = {"head.mlp.0.weight": torch.zeros(8, 4),
             "head.last_layer.weight_g": torch.ones(16, 1)} if head else {}
    return {"teacher": {**{f"backbone.{k}": v for k, v in sd.items()}, **extra}, "epoch": 3}


def ibot_full_layout(sd: dict) -> dict:
    """A full iBOT training checkpoint (``main_ibot.py``): student in DDP, teacher, heads, arguments."""
    return {"student": {**{f"module.backbone.{k}": v for k, v in sd.items()},
                        "module.backbone.masked_embed": torch.zeros(1, 384),
                        "module.head.mlp.0.weight": torch.zeros(8, 4)},
            "teacher": teacher_layout(sd)["teacher"], "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16)}


def hub_folder(d, architecture: str, sd: dict, **model_args):
    d.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"architecture": architecture, "num_classes": 0,
                                               "model_args": model_args}))
    return d / "model.safetensors"


@pytest.fixture
def one_block(monkeypatch):
    from cytofm.models.families import releases

    monkeypatch.setattr(releases, "build_vit", lambda arch, img, **kw: build_vit(arch, img, depth=1, **kw))


# --- each case: write a checkpoint of the wrong architecture; return (spec, weights file, what the message
# names)
def timm_vit_small_as_tiny(tmp):
    torch.save(weights("vit_small_patch16_224", num_classes=0), p := tmp / "vit_small.pth")
    n = len(keys_of("vit_tiny_patch16_224", num_classes=0))
    return f"timm:vit_tiny_patch16_224:{p}", p, [f"shape mismatch for {n} key(s)",
                                                 "cls_token (1, 1, 384) vs (1, 1, 192)"]


def timm_resnet18_as_resnet10t(tmp):
    sd = weights("resnet18", num_classes=0)
    torch.save(sd, p := tmp / "resnet18.pth")
    own = keys_of("resnet10t", num_classes=0)
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    return f"timm:resnet10t:{p}", p, [f"missing {len(missing)} key(s)", "'conv1.0.weight'",
                                      f"unexpected {len(set(sd) - set(own))} key(s)", "'conv1.weight'"]


def timm_efficientnet_b1_as_b0(tmp):
    """b0's keys are a subset of b1's, with the same shapes: this loaded, without a word, before."""
    sd = weights("efficientnet_b1", num_classes=0)
    torch.save(sd, p := tmp / "efficientnet_b1.pth")
    extra = len(set(sd) - set(keys_of("efficientnet_b0", num_classes=0)))
    return f"timm:efficientnet_b0:{p}", p, [f"unexpected {extra} key(s)", "'blocks.0.1.bn1.bias'",
                                            "'blocks.0.1.bn1.running_mean'"]


def local_dir_vit(tmp):
    p = hub_folder(tmp / "hub", "vit_tiny_patch16_224",
                   weights("vit_small_patch16_224", num_classes=0, img_size=32),
                   img_size=32, dynamic_img_size=True)
    return f"local-dir:{tmp / 'hub'}", p, ["shape mismatch for", "pos_embed (1, 5, 384) vs (1, 5, 192)"]


def local_dir_efficientnet(tmp):
    sd = weights("efficientnet_b1", num_classes=0)
    p = hub_folder(tmp / "hub", "efficientnet_b0", sd)
    extra = len(set(sd) - set(keys_of("efficientnet_b0", num_classes=0)))
    return f"local-dir:{tmp / 'hub'}", p, [f"unexpected {extra} key(s)", "'blocks.0.1.bn1.bias'"]


def cytofm_export_of_another_size(tmp):
    save_file({k: v.contiguous() for k, v in weights("vit_small_patch16_224", num_classes=0,
                                                     img_size=32).items()},
              str(p := tmp / "m.safetensors"))
    args = {"num_classes": 0, "img_size": 32, "dynamic_img_size": True}
    (tmp / "m.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "model_args": args}))
    return f"cytofm:{p}", p, ["shape mismatch for", "patch_embed.proj.bias (384,) vs (192,)"]


def cytofm_run_of_another_size(tmp):
    (tmp / "run").mkdir()
    torch.save({"teacher_backbone": weights("vit_small_patch16_224", num_classes=0, img_size=32),
                "arch": "vit_tiny_patch16_224", "model_args": {"num_classes": 0, "img_size": 32}},
               p := tmp / "run" / "checkpoint.pt")
    return f"cytofm:{tmp / 'run'}", p, ["shape mismatch for", "blocks.0.norm1.weight (384,) vs (192,)"]


def cytofm_paper_vit_b32(tmp):
    """A ViT-B/32 where the paper's ViT-B/16 belongs: timm would resample its patch embedding, and did."""
    torch.save(teacher_layout(weights("vit_base_patch32_224", num_classes=0, depth=1)),
               p := tmp / "cytofm.pth")
    return f"cytofm-paper:{p}", p, ["shape mismatch for 2 key(s)", "pos_embed (1, 50, 768) vs (1, 197, 768)",
                                    "patch_embed.proj.weight (768, 3, 32, 32) vs (768, 3, 16, 16)"]


def ibot_with_layerscale(tmp):
    """A ViT-S/16 with LayerScale (DeiT-III style) in the full iBOT layout."""
    torch.save(ibot_full_layout(weights("vit_small_patch16_224", num_classes=0, depth=1, init_values=1e-5)),
               p := tmp / "checkpoint.pth")
    return f"ibot-imagenet:{p}", p, ["unexpected 2 key(s)", "'blocks.0.ls1.gamma', 'blocks.0.ls2.gamma'"]


def uni_without_layerscale(tmp):
    torch.save(weights("vit_large_patch16_224", num_classes=0, depth=1), p := tmp / "pytorch_model.bin")
    return f"uni:{p}", p, ["missing 2 key(s)", "'blocks.0.ls1.gamma', 'blocks.0.ls2.gamma'"]


def dinov2_with_registers(tmp):
    """The original DINOv2 layout at 518 px, of a ViT-S/14 with four registers (dinov2_vits14_reg)."""
    sd = weights("vit_small_patch14_dinov2", num_classes=0, depth=1, img_size=518)
    sd.update(mask_token=torch.zeros(1, 384), register_tokens=torch.zeros(1, 4, 384))
    torch.save(sd, p := tmp / "dinov2_vits14_reg4_pretrain.pth")
    return f"dinov2:{p}", p, ["unexpected",
                              ("'register_tokens'", "'reg_token'")]  # as timm converts it, or not


def dinobloom_s_given_as_b(tmp):
    torch.save(teacher_layout(weights("vit_small_patch14_dinov2", num_classes=0, depth=1), head=False),
               p := tmp / "DinoBloom-S.pth")
    return f"dinobloom:b:{p}", p, ["shape mismatch for", "cls_token (1, 1, 384) vs (1, 1, 768)"]


def phikon_of_another_width(tmp):
    hf = {f"vit.{k}": v.contiguous() for k, v in timm_to_hf_vit(weights("vit_small_patch16_224",
                                                                        num_classes=0,
                                                                         depth=1)).items()}
    save_file(hf, str(tmp / "model.safetensors"))
    return f"phikon:{tmp}", tmp, ["shape mismatch for", "cls_token (1, 1, 384) vs (1, 1, 768)"]


CASES = [timm_vit_small_as_tiny, timm_resnet18_as_resnet10t, timm_efficientnet_b1_as_b0, local_dir_vit,
         local_dir_efficientnet, cytofm_export_of_another_size, cytofm_run_of_another_size,
         cytofm_paper_vit_b32,
         ibot_with_layerscale, uni_without_layerscale, dinov2_with_registers, dinobloom_s_given_as_b,
         phikon_of_another_width]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_checkpoint_of_another_architecture_is_refused_with_its_keys(case, tmp_path, one_block):
    spec, source, names = case(tmp_path)
    with pytest.raises(EncoderError) as e:
        create_encoder(spec)
    msg = str(e.value)
    assert msg.startswith(f"{source} does not fit the architecture: "), msg
    assert all(any(a in msg for a in ((n,) if isinstance(n, str) else n)) for n in names), (names, msg)
    assert "\n" not in msg


# --- a classifier head is left out, and said; nothing else is ------------------------------------------
def convnext_keeps_head_norm(tmp):
    """ConvNeXt keeps ``head.norm`` without a classifier: only ``head.fc`` goes (the release adapter used to
    drop all of ``head.*``, and the load then failed)."""
    sd = weights("test_convnext")  # with its 1000-class head.fc
    torch.save(sd, p := tmp / "convnext.pth")
    return f"timm:test_convnext:{p}", p, sd, ["head.fc.weight", "head.fc.bias"]


def vit_with_a_head(tmp):
    sd = weights("vit_tiny_patch16_224", num_classes=10)
    torch.save(sd, p := tmp / "vit.pth")
    return f"timm:vit_tiny_patch16_224:{p}", p, sd, ["head.weight", "head.bias"]


def hub_resnet_with_fc(tmp):
    sd = {k: v for k, v in weights("test_resnet").items() if not k.endswith("num_batches_tracked")}
    p = hub_folder(tmp / "hub", "test_resnet", sd)  # with its fc; without BN counters (torch sets them)
    return f"local-dir:{tmp / 'hub'}", p, sd, ["fc.weight", "fc.bias"]


def phikon_with_pooler(tmp):
    sd = weights("vit_base_patch16_224", num_classes=0, depth=1)
    hf = {f"vit.{k}": v.contiguous() for k, v in timm_to_hf_vit(sd).items()}
    hf.update({"vit.pooler.dense.weight": torch.zeros(768, 768), "vit.pooler.dense.bias": torch.zeros(768)})
    save_file(hf, str(tmp / "model.safetensors"))
    return f"phikon:{tmp}", tmp, sd, ["pooler.dense.weight", "pooler.dense.bias"]


HEADS = [convnext_keeps_head_norm, vit_with_a_head, hub_resnet_with_fc, phikon_with_pooler]


@pytest.mark.parametrize("case", HEADS, ids=[c.__name__ for c in HEADS])
def test_a_classifier_head_is_dropped_and_said(case, tmp_path, caplog, one_block):
    spec, source, sd, head = case(tmp_path)
    with caplog.at_level(logging.INFO, logger="cytofm"):
        enc = create_encoder(spec)
    got = getattr(enc.model, "vit", enc.model).state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items() if k in got)
    assert {k for k in sd if k not in got} <= set(head)
    said = [r.getMessage() for r in caplog.records if r.name == "cytofm" and "classifier" in r.getMessage()]
    assert len(said) == 1 and str(source) in said[0] and all(k in said[0] for k in head), said


@pytest.mark.parametrize("spec,base,extra", [
    ("timm:vit_tiny_patch16_224", "vit_tiny_patch16_224",
     "headx.weight"),  # "head"-like, not the head: it used to go
    ("timm:vit_tiny_patch16_224", "vit_tiny_patch16_224", "blocks.0.attn.extra"),
    ("timm:test_resnet", "test_resnet", "fc2.weight"),
    ("timm:test_resnet", "test_resnet", "layer5.0.conv1.weight"),
])
def test_an_extra_key_that_is_no_head_is_refused(spec, base, extra, tmp_path):
    sd = {**weights(base, num_classes=0), extra: torch.zeros(3)}
    torch.save(sd, p := tmp_path / "w.pth")
    want = f"{p} does not fit the architecture: unexpected 1 key(s), e.g. ['{extra}']"
    with pytest.raises(EncoderError, match="^" + re.escape(want)):
        create_encoder(f"{spec}:{p}")


def test_load_strictly_itself():
    class Net(nn.Module):  # no timm pretrained_cfg: no classifier to drop unless named
        def __init__(self):
            super().__init__()
            self.body, self.bn = nn.Linear(2, 2), nn.BatchNorm1d(2)

    net = Net()
    # torch sets the counter
    sd = {k: v for k, v in Net().state_dict().items() if k != "bn.num_batches_tracked"}
    assert load_strictly(net, sd, "ok.pt") == []
    assert torch.equal(net.body.weight, sd["body.weight"])
    with_head = {**sd, "head.weight": torch.zeros(1, 2)}
    want = "w.pt does not fit the architecture: unexpected 1 key(s), e.g. ['head.weight'] (model: Net)"
    with pytest.raises(EncoderError, match="^" + re.escape(want) + "$"):
        load_strictly(net, with_head, "w.pt")
    assert load_strictly(net, with_head, "w.pt", classifier="head") == ["head.weight"]
    vit = build_vit("vit_tiny_patch16_224", 32, depth=1)
    vsd = {**vit.state_dict(), "head.weight": torch.zeros(10, 192), "head.bias": torch.zeros(10)}
    with pytest.raises(EncoderError, match=r"unexpected 2 key\(s\), e\.g\. \['head\.bias', 'head\.weight'\]"):
        load_strictly(vit, vsd, "v.pt", classifier=())
    assert load_strictly(vit, vsd, "v.pt", adapt=adapt_timm_vit) == ["head.weight", "head.bias"]
    many = {k: v for k, v in vsd.items() if not k.startswith("blocks.0.")}
    with pytest.raises(EncoderError,
                       match=r"missing 12 key\(s\), e\.g\. \['blocks\.0\.norm1\.weight', ") as e:
        load_strictly(vit, many, "v.pt")
    assert str(e.value).count("blocks.0.") == 5  # the first few, not all twelve


def test_dinov2_giant_original_layout_is_converted_not_refused(tmp_path, one_block):
    """The original ViT-g/14 has SwiGLU ``mlp.w12``/``mlp.w3``; timm renames them when it sees the DINOv2
    layout (its ``mask_token``), which the release adapter now leaves for it to see."""
    ref = weights("vit_giant_patch14_dinov2", num_classes=0, depth=1, img_size=224)
    orig = {k.replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3"): v for k, v in ref.items()}
    torch.save({**orig, "mask_token": torch.zeros(1, 1536)}, p := tmp_path / "dinov2_vitg14_pretrain.pth")
    got = create_encoder(f"dinov2:{p}").model.vit.state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], v) for k, v in ref.items())
