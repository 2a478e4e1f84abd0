"""Every loader of the zoo, tested with checkpoints written here in the official layouts (random weights):
strict loading, and outputs identical to a timm model given the same weights."""

import json

import pytest
import timm
import torch

from cytofm.models.build import build_vit
from cytofm.models.hf_vit import timm_to_hf_vit
from cytofm.models.zoo import EncoderError, create_encoder


def timm_vit(arch, img=224, seed=1, **kw):
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=0, img_size=img, **kw).eval()


def same_output(enc, ref, img=224):
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        return torch.allclose(enc.model(x), ref.forward_features(x)[:, 0], atol=1e-5)


def test_random_is_deterministic_per_seed():
    a, b = create_encoder("random:vit_tiny_patch16_224"), create_encoder("random:vit_tiny_patch16_224")
    c = create_encoder("random:vit_tiny_patch16_224:7")
    assert a.weights_hash == b.weights_hash != c.weights_hash
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x))
    assert a.embed_dim == 192 and a.input_size == 224


@pytest.mark.parametrize("prefix", ["backbone.", "module.backbone."])
def test_cytofm_paper_ibot_teacher_layout(tmp_path, prefix):
    ref = timm_vit("vit_base_patch16_224")
    ck = {"teacher": {**{prefix + k: v for k, v in ref.state_dict().items()},
                      prefix.replace("backbone.", "") + "head.mlp.0.weight": torch.zeros(2, 2)},
          "student": {}, "epoch": 3}
    torch.save(ck, tmp_path / "cytofm.pth")
    enc = create_encoder(f"cytofm-paper:{tmp_path / 'cytofm.pth'}")
    assert enc.embed_dim == 768 and same_output(enc, ref)


def test_ibot_imagenet_small_detected_from_width(tmp_path):
    import argparse

    ref = timm_vit("vit_small_patch16_224")
    torch.save({"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()},
                "args": argparse.Namespace(arch="vit_small")}, tmp_path / "checkpoint_teacher.pth")
    enc = create_encoder(f"ibot-imagenet:{tmp_path / 'checkpoint_teacher.pth'}")
    assert enc.embed_dim == 384 and same_output(enc, ref)


def test_uni_timm_layout_with_layerscale(tmp_path, monkeypatch):
    """UNI's layout (timm ViT-L/16 keys with LayerScale gammas); four blocks instead of 24 keep the file at
    a sixth of its size and the test in seconds: every block has the same keys."""
    from cytofm.models.families import releases

    monkeypatch.setattr(releases, "build_vit", lambda arch, img, **kw: build_vit(arch, img, depth=4, **kw))
    ref = timm_vit("vit_large_patch16_224", init_values=1e-5, depth=4)
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    enc = create_encoder(f"uni:{tmp_path / 'pytorch_model.bin'}")
    assert enc.embed_dim == 1024 and same_output(enc, ref)
    assert any(k.endswith("ls1.gamma") for k in ref.state_dict())


def test_dinov2_original_layout_at_518_resized_to_224(tmp_path):
    big = timm_vit("vit_small_patch14_dinov2", img=518)
    sd = {**big.state_dict(), "mask_token": torch.zeros(1, 384)}
    torch.save(sd, tmp_path / "dinov2_vits14_pretrain.pth")
    enc = create_encoder(f"dinov2:{tmp_path / 'dinov2_vits14_pretrain.pth'}")
    ref = timm_vit("vit_small_patch14_dinov2", img=224)
    from timm.models.vision_transformer import checkpoint_filter_fn

    ref.load_state_dict(checkpoint_filter_fn(dict(big.state_dict()), ref), strict=True)
    assert same_output(enc, ref)


def test_dinobloom_teacher_layout(tmp_path):
    ref = timm_vit("vit_small_patch14_dinov2", img=224)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "DinoBloom-S.pth")
    enc = create_encoder(f"dinobloom:s:{tmp_path / 'DinoBloom-S.pth'}")
    assert same_output(enc, ref)
    with pytest.raises(EncoderError, match="give the size"):
        create_encoder("dinobloom:x:/nowhere")


def test_phikon_hugging_face_layout(tmp_path):
    from safetensors.torch import save_file

    ref = timm_vit("vit_base_patch16_224")
    hf = {f"vit.{k}": v.contiguous() for k, v in timm_to_hf_vit(ref.state_dict()).items()}
    hf["vit.pooler.dense.weight"] = torch.zeros(2, 2)
    save_file(hf, str(tmp_path / "model.safetensors"))
    enc = create_encoder(f"phikon:{tmp_path}")
    assert same_output(enc, ref)


def test_timm_with_local_path_and_without(tmp_path, monkeypatch):
    ref = timm_vit("vit_tiny_patch16_224")
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    enc = create_encoder(f"timm:vit_tiny_patch16_224:{tmp_path / 'w.pth'}")
    assert same_output(enc, ref)
    monkeypatch.delenv("CYTOFM_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(EncoderError, match="local weights path"):
        create_encoder("timm:vit_tiny_patch16_224")


def test_cytofm_export_and_weights_config(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    ref = timm_vit("vit_tiny_patch16_224", img=112)
    save_file({k: v.half().contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224",
                                                 "model_args": {"num_classes": 0, "img_size": 112,
                                                                "dynamic_img_size": True}}))
    enc = create_encoder(f"cytofm:{tmp_path / 'm.safetensors'}")
    assert enc.input_size == 112
    ref.load_state_dict({k: v.half().float() for k, v in ref.state_dict().items()})
    assert same_output(enc, ref, img=112)


def test_weights_found_from_config_and_folder(tmp_path, monkeypatch):
    ref = timm_vit("vit_small_patch16_224")
    torch.save({"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "ibot-imagenet.pth")
    monkeypatch.setenv("CYTOFM_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("CYTOFM_WEIGHTS", str(tmp_path))
    assert same_output(create_encoder("ibot-imagenet"), ref)  # found as $CYTOFM_WEIGHTS/ibot-imagenet.pth
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "weights.yaml").write_text(f"ibot-imagenet: {tmp_path / 'missing.pth'}\n")
    with pytest.raises(EncoderError, match="does not exist"):
        create_encoder("ibot-imagenet")


def test_missing_weights_say_where_and_licence(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOFM_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("CYTOFM_WEIGHTS", str(tmp_path))
    with pytest.raises(EncoderError, match=r"MahmoodLab/UNI \(gated.*non-commercial"):
        create_encoder("uni")
    with pytest.raises(EncoderError, match="weights not found at"):
        create_encoder("uni:/no/such/file.bin")


def test_wrong_architecture_and_typo():
    with pytest.raises(EncoderError,
                       match=r"unknown encoder 'rando'.*did you mean 'random'.*valid:.*handcrafted"):
        create_encoder("rando:vit_small_patch16_224")


def test_handcrafted_is_deterministic_and_colour_sensitive():
    enc = create_encoder("handcrafted")
    pink = torch.zeros(1, 3, 112, 112)
    pink[:, 0], pink[:, 1], pink[:, 2] = 0.9, 0.6, 0.7
    blue = pink[:, [2, 1, 0]]
    with torch.no_grad():
        a, b = enc.model(pink), enc.model(blue)
    assert a.shape == (1, enc.embed_dim) and torch.isfinite(a).all()
    assert not torch.allclose(a, b) and torch.equal(a, enc.model(pink))


def test_readouts_by_hand_and_recorded_in_the_spec():
    import torch

    from cytofm.models.encoder import ViTFeatures, with_pool
    from cytofm.models.zoo import create_encoder

    enc = create_encoder("random:vit_tiny_patch16_224")
    x = torch.randn(2, 3, 224, 224)
    vit = enc.model.vit.eval()
    t = vit.forward_features(x)
    with torch.no_grad():
        assert torch.allclose(with_pool(enc, "mean").model(x), t[:, 1:].mean(1), atol=1e-5)
        both = with_pool(enc, "cls+mean")
        assert torch.allclose(both.model(x), torch.cat([t[:, 0], t[:, 1:].mean(1)], -1), atol=1e-5)
        last4 = with_pool(enc, "last4")
        f = last4.model(x)
    assert f.shape == (2, 5 * 192) and last4.embed_dim == 5 * 192 and both.embed_dim == 2 * 192
    # the last block's [CLS] = forward_features'
    assert torch.allclose(f[:, 3 * 192:4 * 192], t[:, 0], atol=1e-5)
    assert torch.allclose(f[:, 4 * 192:], t[:, 1:].mean(1), atol=1e-5)
    assert not torch.allclose(f[:, :192], t[:, 0], atol=1e-3)  # an earlier block's [CLS] differs
    assert last4.spec.endswith("#pool=last4") and with_pool(last4, "cls").spec == enc.spec
    with pytest.raises(ValueError, match="pool must be one of"):
        ViTFeatures(vit, "max")
