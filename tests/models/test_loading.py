"""Weights files: no code runs from a pickle unless trusted, and released iBOT layouts load."""

import argparse
import pathlib

import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.models.loading import (
    TRUST_ENV,
    UnsafeWeightsError,
    adapt_timm_vit,
    backbone_state_from_release,
    load_strictly,
    torch_load,
)
from cytofm.models.zoo import EncoderError, create_encoder

from tests.helpers import smear


class _Payload:
    """Unpickling this touches a file: the stand-in for a shell command in a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def evil(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "pwned"
    path = tmp_path / "m.pt"
    torch.save({"config": _Payload(marker), "teacher_backbone": {}, "state_dict": {"x": torch.zeros(1)}},
               path)
    return path, marker


@pytest.mark.parametrize("spec", ["cytofm:{p}", "timm:vit_tiny_patch16_224:{p}", "uni:{p}",
                                  "ibot-imagenet:{p}", "cytofm-paper:{p}", "dinov2:{p}", "dinobloom:s:{p}",
                                  "phikon:{p}"])
def test_malicious_pickle_is_refused_by_every_encoder_spec(evil, spec):
    path, marker = evil
    with pytest.raises(EncoderError, match="--trust-weights") as e:
        create_encoder(spec.format(p=path))
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_malicious_pickle_is_refused_by_init_from_and_export_and_resume(evil, tmp_path):
    from tests.helpers import TINY

    path, marker = evil
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(smear(h=64, w=64)[0]).save(imgs / "a.png")
    runner = CliRunner()
    r = runner.invoke(app, ["pretrain", "--data", str(imgs), "--out", str(tmp_path / "run"), "--init-from",
                            str(path), *TINY, "train.iterations=1"])
    assert r.exit_code == 2 and "refused to load" in r.output and "Traceback" not in r.output
    run = tmp_path / "run2"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(path.read_bytes())  # a planted checkpoint in a run folder
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "refused to load" in r.output
    r = runner.invoke(app, ["pretrain", "--data", str(imgs), "--out", str(run), *TINY, "train.iterations=1"])
    assert r.exit_code == 2 and "refused to load" in r.output
    assert not marker.exists()


def test_trusting_one_file_is_explicit_and_only_that_file(evil, tmp_path, monkeypatch, caplog):
    path, marker = evil
    other = tmp_path / "other.pt"
    other.write_bytes(path.read_bytes())
    monkeypatch.setenv(TRUST_ENV, str(path))
    with caplog.at_level("WARNING", logger="cytofm"):
        torch_load(path)
    assert marker.exists() and "trusted by --trust-weights" in caplog.text
    marker.unlink()
    with pytest.raises(UnsafeWeightsError):
        torch_load(other)
    assert not marker.exists()


def test_trust_flag_on_the_command_line(evil, monkeypatch):
    path, marker = evil
    monkeypatch.delenv(TRUST_ENV, raising=False)
    r = CliRunner().invoke(app, ["--trust-weights", str(path), "extract", "--help"])
    assert r.exit_code == 0 and "trusted to run code" in r.output
    import os

    assert str(path.resolve()) in os.environ[TRUST_ENV]


def test_safetensors_and_plain_state_dicts_need_no_trust(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    sd = timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict()
    torch.save(sd, tmp_path / "plain.pt")
    assert torch_load(tmp_path / "plain.pt").keys() == sd.keys()


# --- the reference's checkpoint layouts ------------------------------------------------------------
def _ibot_full_checkpoint(student_vit: dict, teacher_vit: dict, dim: int) -> dict:
    """A full iBOT training checkpoint as ``main_ibot.py`` saves it: the student wrapped in DDP
    (``module.``), the teacher not; heads with old-style weight norm; the student's ``masked_embed``;
    the arguments as an ``argparse.Namespace``; loss centres, optimiser and fp16 scaler state."""
    head = {"head.mlp.0.weight": torch.randn(16, dim), "head.mlp.0.bias": torch.zeros(16),
            "head.last_layer.weight_g": torch.ones(32, 1), "head.last_layer.weight_v": torch.randn(32, 8)}
    return {
        "student": {**{f"module.backbone.{k}": v for k, v in student_vit.items()},
                    "module.backbone.masked_embed": torch.zeros(1, dim),
                    **{f"module.{k}": v for k, v in head.items()},
                    "module.head.last_layer2.weight_g": torch.ones(32, 1),
                    "module.head.last_layer2.weight_v": torch.randn(32, 8)},
        "teacher": {**{f"backbone.{k}": v for k, v in teacher_vit.items()}, **head},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "epoch": 101,
        "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=8192, shared_head=True, lr=5e-4),
        "ibot_loss": {"center": torch.zeros(1, 32), "center2": torch.zeros(1, 1, 32)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                        "growth_interval": 2000, "_growth_tracker": 0},
    }


@pytest.fixture(scope="module")
def two_vits():
    torch.manual_seed(0)
    s = timm.create_model("vit_small_patch16_224", num_classes=0).state_dict()
    torch.manual_seed(1)
    t = timm.create_model("vit_small_patch16_224", num_classes=0).state_dict()
    return s, t


def test_full_ibot_checkpoint_loads_teacher_or_student(two_vits, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    s, t = two_vits
    torch.save(_ibot_full_checkpoint(s, t, 384), tmp_path / "checkpoint.pth")
    obj = torch_load(tmp_path / "checkpoint.pth")  # Namespace args: allowed without trust
    assert obj["args"].arch == "vit_small"
    for key, want in (("teacher", t), ("student", s)):
        vit = timm.create_model("vit_small_patch16_224", num_classes=0)
        load_strictly(vit, backbone_state_from_release(obj, key), key, adapt=adapt_timm_vit)
        for k, v in want.items():
            assert torch.equal(vit.state_dict()[k], v), (key, k)
    enc = create_encoder(f"ibot-imagenet:{tmp_path / 'checkpoint.pth'}")  # the teacher, by default
    assert torch.equal(enc.model.vit.state_dict()["blocks.0.attn.qkv.weight"], t["blocks.0.attn.qkv.weight"])


def test_student_and_teacher_dicts_alone_and_extracted_backbones(two_vits, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    s, t = two_vits
    full = _ibot_full_checkpoint(s, t, 384)
    layouts = {
        "student_only": ({"student": full["student"]}, s),  # masked_embed and module.head.* must be dropped
        "teacher_only": ({"teacher": full["teacher"]}, t),
        # extract_backbone_weights.py: {'state_dict': backbone keys without prefix}
        "backbone_t": ({"state_dict": {k: v for k, v in t.items()}}, t),
    }
    for name, (obj, want) in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pth")
        enc = create_encoder(f"ibot-imagenet:{tmp_path / name}.pth")
        got = enc.model.vit.state_dict()
        assert all(torch.equal(got[k], v) for k, v in want.items()), name
