"""The Hugging Face hub layout: ``cytofm export --hf-dir`` loads in timm as it is, ``local-dir:``/``hf-hub:``
specs take the checkpoint's own normalisation, downloads stay opt-in, and no pickle in a hub folder runs
code. Uploading (``--push-to-hub``) cannot run here (no account, no network): only the upload it builds
is checked, with ``huggingface_hub.HfApi`` replaced by a recorder."""

import json
import os
import pathlib

import pytest
import timm
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.models.hub import push_hub_dir, read_hub_dir
from cytofm.models.loading import TRUST_ENV
from cytofm.models.zoo import EncoderError, create_encoder

runner = CliRunner()


def _vit(img=32, seed=3):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=img,
                             dynamic_img_size=True).eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A pretraining run folder as the trainer leaves it (only what export reads)."""
    from cytofm.config.loader import build_config, config_dict
    from cytofm.ssl.config import PretrainConfig

    from tests.helpers import TINY

    root = tmp_path_factory.mktemp("run")
    cfg = build_config(PretrainConfig, overrides=TINY)
    vit = _vit()
    torch.save({"iteration": 7, "teacher_backbone": vit.state_dict(), "config": config_dict(cfg),
                "arch": "vit_tiny_patch16_224",
                "model_args": {"num_classes": 0, "img_size": 32, "dynamic_img_size": True}},
               root / "checkpoint.pt")
    return root


def _features(model, img=32):
    torch.manual_seed(0)
    x = torch.randn(3, 3, img, img)
    with torch.no_grad():
        return model(x)


def test_export_hf_dir_is_what_timm_loads(run, tmp_path):
    d = tmp_path / "hub"
    r = runner.invoke(app, ["export", str(run), "--hf-dir", str(d)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["num_features"] == 192
    assert cfg["model_args"] == {"num_classes": 0, "img_size": 32, "dynamic_img_size": True}
    pc = cfg["pretrained_cfg"]
    assert pc["crop_pct"] == 1.0 and pc["input_size"] == [3, 32, 32]
    assert pc["mean"] == [0.485, 0.456, 0.406] and pc["std"] == [0.229, 0.224, 0.225]
    card = (d / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: timm" in card and "license: apache-2.0" in card
    assert "iteration 7" in card

    model = timm.create_model(f"local-dir:{d}", pretrained=True).eval()
    assert (model.pretrained_cfg["mean"] == tuple(pc["mean"])
            or list(model.pretrained_cfg["mean"]) == pc["mean"])
    ref = create_encoder(f"cytofm:{run}")
    want = _features(ref.model)
    assert torch.equal(_features(model), want)
    for spec in (f"cytofm:{d}", f"local-dir:{d}", f"timm:local-dir:{d}", f"timm:vit_tiny_patch16_224:{d}"):
        enc = create_encoder(spec)
        assert enc.weights_hash == ref.weights_hash and torch.equal(_features(enc.model), want), spec
        assert enc.input_size == 32 and enc.mean == (0.485, 0.456, 0.406)


def test_export_needs_a_target_and_push_needs_the_folder(run, tmp_path):
    r = runner.invoke(app, ["export", str(run)])
    assert r.exit_code == 2 and "--hf-dir" in r.output
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "m.safetensors"), "--push-to-hub",
                            "me/x"])
    assert r.exit_code == 2 and "give --hf-dir DIR too" in r.output


def test_push_to_hub_builds_the_upload(run, tmp_path, monkeypatch):
    """Not a real upload: HfApi is replaced by a recorder (no account or network here)."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    d = tmp_path / "hub"
    r = runner.invoke(app, ["export", str(run), "--hf-dir", str(d), "--push-to-hub", "lab/cyto-vit"])
    assert r.exit_code == 0, r.output
    assert [c[:2] for c in calls] == [("create_repo", "lab/cyto-vit"), ("upload_folder", "lab/cyto-vit")]
    assert calls[0][2] == {"private": True, "exist_ok": True}
    up = calls[1][2]
    assert up["folder_path"] == str(d) and up["allow_patterns"] == ["README.md", "config.json",
                                                                    "model.safetensors"]
    assert push_hub_dir(d, "lab/x", dry_run=True)["files"] == up["allow_patterns"]

    class Offline(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("Could not resolve host: huggingface.co\nmore")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    r = runner.invoke(app, ["export", str(run), "--hf-dir", str(d), "--push-to-hub", "lab/cyto-vit"])
    assert (r.exit_code == 2 and "upload failed (Could not resolve host" in r.output
            and "Traceback" not in r.output)


def _hub_folder(d: pathlib.Path, mean, std, img: int, seed=5) -> torch.nn.Module:
    vit = _vit(img, seed)
    d.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 0, "num_features": 192, "global_pool": "token",
        "model_args": {"img_size": img, "dynamic_img_size": True},
        "pretrained_cfg": {"input_size": [3, img, img], "mean": mean, "std": std, "crop_pct": 1.0}}))
    return vit


def test_normalisation_and_size_come_from_the_checkpoint(tmp_path):
    mean, std = [0.1, 0.2, 0.3], [0.6, 0.5, 0.4]
    vit = _hub_folder(tmp_path / "h", mean, std, 48)
    want = _features(vit, 48)
    for spec in (f"local-dir:{tmp_path / 'h'}", f"timm:local-dir:{tmp_path / 'h'}",
                 f"timm:vit_tiny_patch16_224:{tmp_path / 'h' / 'model.safetensors'}"):
        enc = create_encoder(spec)
        assert (enc.mean, enc.std, enc.input_size) == (tuple(mean), tuple(std), 48), spec
        assert torch.allclose(_features(enc.model, 48), want, atol=1e-6), spec
    # a cytofm export (FILE.safetensors + FILE.json) through timm:ARCH:PATH: its own mean/std, not timm's 0.5
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "e.safetensors"))
    (tmp_path / "e.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "model_args": {},
                                                 "pretrained_cfg": {"mean": mean, "std": std,
                                                                    "input_size": [3, 48, 48]}}))
    enc = create_encoder(f"timm:vit_tiny_patch16_224:{tmp_path / 'e.safetensors'}")
    assert (enc.mean, enc.std, enc.input_size) == (tuple(mean), tuple(std), 48)
    assert torch.allclose(_features(enc.model, 48), want, atol=1e-6)
    with pytest.raises(EncoderError, match="holds a 'vit_tiny_patch16_224', not a 'resnet18'"):
        create_encoder(f"timm:resnet18:{tmp_path / 'h'}")


def test_hf_hub_without_download_names_the_repo_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("CYTOFM_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # timm: no longer parses "hf-hub" as a model
    for spec in ("hf-hub:lab/cyto-vit", "timm:hf-hub:lab/cyto-vit"):
        with pytest.raises(EncoderError) as e:
            create_encoder(spec)
        msg = str(e.value)
        assert "hf-hub:lab/cyto-vit" in msg and "CYTOFM_ALLOW_DOWNLOAD=1" in msg
        assert "huggingface-cli download lab/cyto-vit --local-dir DIR" in msg and "\n" not in msg
    with pytest.raises(EncoderError, match="ORG/REPO"):
        create_encoder("hf-hub:just-a-name")


def test_hf_hub_uses_what_is_already_in_the_local_cache(tmp_path, monkeypatch):
    """A repository fetched earlier (the hub cache layout: refs/main -> snapshots/<rev>/) loads offline."""
    monkeypatch.delenv("CYTOFM_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--lab--cyto-vit"
    vit = _hub_folder(repo / "snapshots" / rev, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], 32)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    enc = create_encoder("hf-hub:lab/cyto-vit")
    assert enc.mean == (0.5, 0.5, 0.5) and enc.info["repo"] == "lab/cyto-vit"
    assert torch.allclose(_features(enc.model), _features(vit), atol=1e-6)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_in_a_hub_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    d = tmp_path / "evil"
    _hub_folder(d, [0.5] * 3, [0.5] * 3, 32)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"cls_token": torch.zeros(1), "x": _Payload(marker)}, d / "pytorch_model.bin")
    for spec in (f"local-dir:{d}", f"cytofm:{d}", f"timm:local-dir:{d}"):
        with pytest.raises(EncoderError, match="--trust-weights") as e:
            create_encoder(spec)
        assert str(d / "pytorch_model.bin") in str(e.value)
    r = runner.invoke(app, ["extract", "--encoder", f"local-dir:{d}", "--input", str(tmp_path), "--mode",
                            "image", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "refused to load" in r.output and "Traceback" not in r.output
    # timm's own local-dir loader (installed version) also uses weights_only=True: it refuses as well
    with pytest.raises(Exception):  # noqa: B017 - whichever error timm raises, no code may run
        timm.create_model(f"local-dir:{d}", pretrained=True)
    assert not marker.exists()
    with pytest.raises(ValueError, match="no weights file"):
        (d / "pytorch_model.bin").unlink()
        read_hub_dir(d)


def test_shipped_encoder_in_the_hub_layout(tmp_path):
    """The packaged config.json/README.md are exactly what `cytofm export shipped --hf-dir` writes, and the
    folder links the one shipped weights file (no second copy of the 43 MB)."""
    from cytofm.models.shipped import shipped_hub_dir, shipped_hub_files, shipped_weights

    d = tmp_path / "cytofm_vit_small_patch16"
    r = runner.invoke(app, ["export", "shipped", "--hf-dir", str(d)])
    assert r.exit_code == 0, r.output
    for name in ("config.json", "README.md"):
        assert (d / name).read_text() == (shipped_hub_files() / name).read_text(), name
    m = shipped_hub_dir(tmp_path / "m")
    assert os.path.samefile(m / "model.safetensors", shipped_weights()) or \
        (m / "model.safetensors").read_bytes() == shipped_weights().read_bytes()
    model = timm.create_model(f"local-dir:{m}", pretrained=True).eval()
    ref = create_encoder("cytofm")
    assert torch.equal(_features(model, 224), _features(ref.model, 224))
