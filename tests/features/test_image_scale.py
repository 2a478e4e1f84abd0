"""``extract --mode image`` (#44): images of different um/px (a manifest's mpp column) are read at one
physical scale before the encoder's resize, said in the log; without um/px nothing changes; an image
``prepare`` refuses as too small is refused with the same message."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from cytofm.features.items import collect_items

from tests.helpers import smear


class _Raw:
    """A stand-in encoder whose 'preprocessing' hands back the pixels read, to see what the encoder gets."""

    input_size = 224

    @staticmethod
    def preprocess(rgb):
        return torch.from_numpy(np.ascontiguousarray(rgb))


def _read(items):
    from cytofm.features.instances import Instances

    ds = Instances(items, _Raw())
    return {it.id: ds[k] for k, it in enumerate(items)}


@pytest.fixture
def crops(tmp_path):
    """Two 120 px crops: one at 0.2 um/px (a 24 um field), one at 0.1 um/px (a 12 um field)."""
    a = smear(h=120, w=120, cells=((60, 60, 20),), seed=0)[0]
    b = smear(h=120, w=120, cells=((60, 60, 40),), seed=1)[0]
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    return tmp_path, a, b


def test_images_of_different_mpp_are_read_at_one_physical_scale(crops):
    root, a, b = crops
    (root / "m.csv").write_text("path,label,mpp\na.png,x,0.2\nb.png,y,\"0,1\"\n")
    said = []
    items, skips = collect_items(root / "m.csv", "image", root / "out", log=said.append)
    assert not skips and [it.mpp for it in items] == [0.2, 0.1]
    # fields 120 * 0.2 = 24 um and 120 * 0.1 = 12 um: their median is 18 um, 90 px at 0.2 and 180 px at 0.1
    assert [it.size0 for it in items] == [90, 180]
    assert ("note: images of 0.1 to 0.2 um/px are embedded at one physical scale: a square field of 18 um "
            "centred on each (the median of the images' fields), resampled by the encoder to its input "
            "size") in said
    got = _read(items)
    ra, rb = got["a"][0].numpy(), got["b"][0].numpy()
    assert got["a"][3] == "" and got["b"][3] == ""
    assert np.array_equal(ra, a[15:105, 15:105])  # the centred 90 px of a: 18 um
    assert rb.shape == (180, 180, 3) and np.array_equal(rb[30:150, 30:150], b)  # b whole, in 18 um of glass
    assert (rb[:30] == 255).all() and (rb[:, 150:] == 255).all()


def test_without_mpp_or_with_one_mpp_images_are_read_whole_as_before(crops):
    root, a, b = crops
    for name, text in (("none.csv", "path,label\na.png,x\nb.png,y\n"),
                       ("one.csv", "path,label,mpp\na.png,x,0.2\nb.png,y,0.2\n")):
        (root / name).write_text(text)
        said = []
        items, _ = collect_items(root / name, "image", root / name[:-4], log=said.append)
        assert [it.size0 for it in items] == [None, None] and not [m for m in said if "scale" in m]
        got = _read(items)
        assert np.array_equal(got["a"][0].numpy(), a) and np.array_equal(got["b"][0].numpy(), b)


def test_extract_refuses_an_image_prepare_refuses_with_its_message(tmp_path):
    from cytofm.data.prepare.run import run_prepare
    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    from tests.helpers import prepare_cfg

    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(smear(h=40, w=40, cells=((20, 20, 8),))[0]).save(root / "ok.png")
    Image.fromarray(np.full((5, 5, 3), 120, np.uint8)).save(root / "tiny.png")
    run_extract(create_encoder("random:vit_tiny_patch16_224"),
                ExtractConfig(input=str(root), mode="image", out=str(tmp_path / "f"), workers=0),
                log=lambda m: None)
    (s,) = list(csv.DictReader(open(tmp_path / "f" / "skipped.csv")))
    assert s["path"].endswith("tiny.png")
    assert s["reason"] == "image 5x5 is too small (a side below min_side=16 px)"
    run_prepare([str(root)], tmp_path / "p", prepare_cfg("tiling.mode=whole"), log=lambda m: None)
    (p,) = list(csv.DictReader(open(tmp_path / "p" / "skipped.csv")))
    assert p["reason"] == s["reason"]


def test_a_recorded_field_reads_new_cases_at_the_training_scale(crops, tmp_path):
    """A saved model's store records the field its images were read at; new cases of one um/px (which alone
    would be read whole, at their own scale) are read at that field, and extract records it."""
    root, a, b = crops
    (root / "train.csv").write_text("path,label,mpp\na.png,x,0.2\nb.png,y,0.1\n")
    chosen: dict = {}
    collect_items(root / "train.csv", "image", root / "t", log=lambda m: None, chosen=chosen)
    assert chosen == {"image_field_um": 18.0, "image_mpp": None}
    (root / "new.csv").write_text("path,label,mpp\nb.png,y,0.1\n")
    said = []
    items, _ = collect_items(root / "new.csv", "image", root / "n", log=said.append, image_field_um=18.0)
    assert [it.size0 for it in items] == [180] and any("(as recorded or given)" in m for m in said)
    rb = _read(items)["b"][0].numpy()
    assert rb.shape == (180, 180, 3) and np.array_equal(rb[30:150, 30:150], b)
    # through extract: the store's config.yaml carries the field, which predict hands back to extract
    import yaml

    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    cfg = ExtractConfig(input=str(root / "train.csv"), mode="image", out=str(tmp_path / "store"),
                        encoder="handcrafted")
    run_extract(create_encoder("handcrafted"), cfg, log=lambda m: None)
    assert yaml.safe_load((tmp_path / "store" / "config.yaml").read_text())["image_field_um"] == 18.0
    import h5py  # the geometry recorded is the field read (90 px at 0.2 um/px), not the whole image's 120

    with h5py.File(tmp_path / "store" / "features" / "a.h5") as f:
        assert f["coords"].attrs["patch_size_level0"] == 90 and f["coords"].attrs["patch_size"] == 90


def test_a_model_trained_at_one_mpp_reads_new_cases_of_another_at_its_scale(crops):
    """The issue's case: trained on crops all at 0.2 um/px (read whole, as ever: a 24 um field), applied to
    crops at 0.1 um/px: those are read as 24 um fields (240 px), crops at 0.2 whole as in training."""
    root, a, b = crops
    (root / "train.csv").write_text("path,label,mpp\na.png,x,0.2\nb.png,y,0.2\n")
    chosen: dict = {}
    items, _ = collect_items(root / "train.csv", "image", root / "t", log=lambda m: None, chosen=chosen)
    assert [it.size0 for it in items] == [None, None] and chosen == {"image_field_um": 24.0, "image_mpp": 0.2}
    (root / "other.csv").write_text("path,label,mpp\nb.png,y,0.1\n")
    items, _ = collect_items(root / "other.csv", "image", root / "o", log=lambda m: None, **_scale(chosen))
    assert [it.size0 for it in items] == [240]
    rb = _read(items)["b"][0].numpy()
    assert rb.shape == (240, 240, 3) and np.array_equal(rb[60:180, 60:180], b) and (rb[:60] == 255).all()
    (root / "same.csv").write_text("path,label,mpp\nb.png,y,0.2\n")
    items, _ = collect_items(root / "same.csv", "image", root / "s", log=lambda m: None, **_scale(chosen))
    assert [it.size0 for it in items] == [None]
    said = []
    (root / "none.csv").write_text("path,label\nb.png,y\n")
    collect_items(root / "none.csv", "image", root / "u", log=said.append, **_scale(chosen))
    assert any("not at the recorded 24 um field" in m for m in said)


def _scale(chosen: dict) -> dict:
    return {"image_field_um": chosen["image_field_um"], "image_mpp": chosen["image_mpp"]}
