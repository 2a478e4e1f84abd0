"""Extraction into the feature store: schema, determinism, resume, bad input; real images when present."""

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.features.config import ExtractConfig
from cytofm.features.extract import run_extract
from cytofm.features.store import load_store, read_item
from cytofm.models.zoo import create_encoder

from tests.helpers import shared_data, smear

ENC = "random:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def encoder():
    return create_encoder(ENC)


@pytest.fixture
def cells(tmp_path):
    root = tmp_path / "cells"
    for cls in ("normal", "abnormal"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            rgb, _ = smear(h=40, w=40, cells=((20, 20, 8 + 4 * i),), seed=i)
            Image.fromarray(rgb).save(root / cls / f"c{i}.png")
    Image.fromarray(smear(h=40, w=40, cells=((20, 20, 8),), seed=0)[0]).save(root / "normal" / "dup.png")
    (root / "abnormal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_image_mode_store_schema_labels_and_identical_inputs(cells, tmp_path, encoder):
    r = run_extract(encoder, ExtractConfig(input=str(cells), mode="image", out=str(tmp_path / "f"),
                                           batch_size=3, workers=0), log=lambda m: None)
    rows = load_store(tmp_path / "f")
    assert sorted(x["label"] for x in rows) == ["abnormal"] * 2 + ["normal"] * 3
    feats = {x["id"]: read_item(x["h5"]) for x in rows}
    f, c, attrs = feats["normal__c0"]
    assert f.shape == (1, 192) and f.dtype == np.float32 and c.tolist() == [[0, 0]]
    assert attrs["encoder"] == "random" and attrs["weights_hash"] == encoder.weights_hash
    assert attrs["cytofm_version"] and attrs["mode"] == "image"
    # the pHash the leakage checks compare, from the pixels extraction decoded (no second decode later)
    from cytofm.data.provenance.hashing import hash_image

    assert attrs["source_phash"] == hash_image(cells / "normal" / "c0.png").phash
    # identical inputs, identical features
    assert np.array_equal(feats["normal__c0"][0], feats["normal__dup"][0])
    assert not np.array_equal(feats["normal__c0"][0], feats["normal__c1"][0])
    skipped = list(csv.DictReader(open(tmp_path / "f" / "skipped.csv")))
    assert len(skipped) == 1 and "broken.png" in skipped[0]["path"]
    assert r["reused"] == 0
    again = run_extract(encoder, ExtractConfig(input=str(cells), mode="image", out=str(tmp_path / "f"),
                                               batch_size=3, workers=0), log=lambda m: None)
    assert again["reused"] == 5 and again["extracted"] == 0  # only the broken file is retried


def test_tiles_mode_prepares_and_batches_across_items(tmp_path, encoder):
    root = tmp_path / "fields"
    root.mkdir()
    for i in range(3):
        rgb, _ = smear(h=240, w=320, seed=i)
        Image.fromarray(rgb).save(root / f"f{i}.png")
    run_extract(encoder, ExtractConfig(input=str(root), mode="tiles", out=str(tmp_path / "f"), batch_size=5,
                                       workers=0), log=lambda m: None)
    rows = load_store(tmp_path / "f")
    assert len(rows) == 3 and (tmp_path / "f" / "prepared" / "manifest.csv").exists()
    for x in rows:
        f, c, attrs = read_item(x["h5"])
        with h5py.File(tmp_path / "f" / "prepared" / "coords" / f"{x['id']}.h5") as p:
            assert np.array_equal(c, p["coords"][:])
        assert f.shape == (len(c), 192) and int(x["n_instances"]) == len(c)
        assert attrs["patch_size"] == 224
    # same field written twice -> same features whatever the batch boundaries
    f0 = read_item(rows[0]["h5"])[0]
    run_extract(encoder, ExtractConfig(input=str(tmp_path / "f" / "prepared"), mode="tiles",
                                       out=str(tmp_path / "g"), batch_size=2, workers=1), log=lambda m: None)
    assert np.allclose(read_item(load_store(tmp_path / "g")[0]["h5"])[0], f0, atol=1e-5)


def test_tta_is_rotation_invariant(cells, tmp_path, encoder):
    import torch

    from cytofm.features.extract import embed_batch

    x = torch.randn(1, 3, 224, 224)
    a = embed_batch(encoder, x, torch.device("cpu"), None, tta=True)
    b = embed_batch(encoder, torch.rot90(x, 1, dims=(-2, -1)), torch.device("cpu"), None, tta=True)
    assert np.allclose(a, b, atol=1e-4)


def test_cli_typo_lists_valid_encoders(tmp_path, cells):
    r = CliRunner().invoke(app, ["extract", "--encoder", "randm:vit", "--input", str(cells), "--mode",
                                 "image", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "did you mean 'random'" in r.output and "Traceback" not in r.output


def test_real_herlev_cells_and_bccd_fields(tmp_path, encoder):
    herlev, bccd = shared_data("herlev"), shared_data("bccd")
    rows = list(csv.DictReader(open(herlev / "manifest.csv")))[::100]
    sub = tmp_path / "herlev.csv"
    with open(sub, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{**r, "image": str(herlev / r["image"]), "mask": ""} for r in rows])
        w.writerow({**rows[0], "image": str(herlev / rows[0]["image"]), "mask": ""})  # a repeated row: merged
        copy = tmp_path / ("copy" + Path(rows[0]["image"]).suffix)
        shutil.copy(herlev / rows[0]["image"], copy)
        w.writerow({**rows[0], "image": str(copy), "mask": ""})  # the same cell under another name
    notes = []
    run_extract(encoder, ExtractConfig(input=str(sub), mode="image", out=str(tmp_path / "h"),
                                       label_column="label7", workers=0), log=notes.append)
    assert any("with the same values; kept once" in n for n in notes)
    store = load_store(tmp_path / "h")
    assert len(store) == len(rows) + 1 and {x["label"] for x in store} <= {r["label7"] for r in rows}
    f0, c0, a0 = read_item(store[0]["h5"])
    assert f0.shape == (1, 192) and c0.shape == (1, 2) and a0["encoder"] == "random"
    assert np.array_equal(f0, read_item(store[-1]["h5"])[0])  # identical inputs, identical features
    b = list(csv.DictReader(open(bccd / "manifest.csv")))[:3]
    sub = tmp_path / "bccd.csv"
    with open(sub, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(b[0]))
        w.writeheader()
        w.writerows([{**r, "image": str(bccd / r["image"])} for r in b])
    run_extract(encoder, ExtractConfig(input=str(sub), mode="tiles", out=str(tmp_path / "b"),
                                       label_column="wbc_type", workers=0), log=lambda m: None)
    store = load_store(tmp_path / "b")
    assert len(store) == 3 and all(int(x["n_instances"]) >= 4 for x in store)
    assert [x["label"] for x in store] == [r["wbc_type"] for r in b]


def test_fp32_extraction_equals_a_plain_forward(tmp_path):
    """The path a CPU without bf16 units takes: no autocast, no autograd graph, the encoder's own output."""
    import numpy as np
    import torch
    from PIL import Image

    from cytofm.features.extract import run_extract
    from cytofm.features.store import load_store, read_item
    from cytofm.models.zoo import create_encoder

    for k in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 + 90 * k, np.uint8)).save(tmp_path / f"{k}.png")
    enc = create_encoder("random:vit_tiny_patch16_224")
    said = []
    run_extract(enc, ExtractConfig(input=str(tmp_path), mode="image", out=str(tmp_path / "f"), batch_size=2,
                                   workers=0, device="cpu", precision="fp32"), log=said.append)
    assert any("precision fp32" in m for m in said)
    for r in load_store(tmp_path / "f"):
        f, _, _ = read_item(r["h5"])
        x = enc.preprocess(np.asarray(Image.open(r["path"]).convert("RGB")))[None]
        with torch.no_grad():
            want = enc.model(x).numpy()
        assert np.allclose(f, want, atol=1e-5)
