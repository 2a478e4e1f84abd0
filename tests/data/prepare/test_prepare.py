import csv
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

from cytofm.data.prepare.prepared import load_prepared
from cytofm.data.prepare.run import NothingUsable, run_prepare

from tests.helpers import prepare_cfg as cfg
from tests.helpers import smear


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def folder(tmp_path):
    """Two class folders of smear fields, plus every kind of bad file."""
    root = tmp_path / "in"
    for cls, seed in (("benign", 0), ("malignant", 1)):
        (root / cls).mkdir(parents=True)
        rgb, _ = smear(h=240, w=320, seed=seed)
        Image.fromarray(rgb).save(root / cls / "field.png")
    (root / "benign" / "empty.jpg").write_bytes(b"")
    (root / "benign" / "garbage.png").write_bytes(b"\x89PNG but not really")
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(root / "malignant" / "tiny.png")
    (root / "malignant" / "notes.txt").write_text("ignored")
    return root


def test_folder_with_labels_and_bad_files(folder, tmp_path):
    out = tmp_path / "out"
    res = run_prepare([str(folder)], out, cfg("metadata.labels_from_folders=true", "tiling.patch_size=64",
                                              "metadata.stain=giemsa"), log=lambda m: None)
    man = rows(out / "manifest.csv")
    assert sorted(r["label"] for r in man) == ["benign", "malignant"]
    assert all(r["stain"] == "giemsa" for r in man)
    skipped = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in rows(out / "skipped.csv")}
    assert "empty file" in skipped["empty.jpg"]
    assert "not a recognised image format" in skipped["garbage.png"]
    assert "too small" in skipped["tiny.png"]
    assert "notes.txt" not in skipped  # not an image: ignored, not an error
    assert res.n_patches == sum(int(r["n_patches"]) for r in man)
    # coords file: CLAM/TRIDENT layout, patches cover the cells
    r = man[0]
    with h5py.File(out / r["coords"]) as f:
        c = f["coords"][:]
        assert c.shape[1] == 2 and c.dtype == np.int64
        assert f["coords"].attrs["patch_size"] == 64 and f["coords"].attrs["patch_level"] == 0
        assert len(f["foreground"]) == len(c)
    assert 0 < len(c) < int(r["n_candidates"])  # background patches dropped, cell patches kept
    kept = {tuple(xy) for xy in c.tolist()}
    assert (64, 64) in kept and (192, 128) in kept  # the cells at (80, 60) and (200, 150)
    assert (out / "qa" / f"{r['id']}.jpg").is_file()
    assert (out / "config.yaml").is_file()


def test_manifest_input_carries_metadata_and_reports_missing(tmp_path):
    rgb, _ = smear()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "doc.docx").write_bytes(b"x")
    man = tmp_path / "m.csv"
    man.write_text("image,diagnosis,patient_id,organ,mpp\na.png,malignant,P1,breast,0.25\n"
                   "missing.png,benign,P2,breast,0.25\ndoc.docx,benign,P3,breast,0.25\n")
    run_prepare([str(man)], tmp_path / "out", cfg("metadata.label_column=diagnosis"), log=lambda m: None)
    (r,) = rows(tmp_path / "out" / "manifest.csv")
    assert ((r["label"], r["specimen"], r["organ"], r["diagnosis"], r["mpp"])
            == ("malignant", "P1", "breast", "malignant", "0.25"))
    reasons = [s["reason"] for s in rows(tmp_path / "out" / "skipped.csv")]
    assert any("file not found (manifest line 3)" in x for x in reasons)
    assert any("unsupported format '.docx'" in x for x in reasons)


def test_target_resolution_resamples_consistently(tmp_path):
    rgb, _ = smear(h=400, w=400, cells=((200, 200, 80),))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    res = run_prepare([str(tmp_path / "a.png")], tmp_path / "out",
                      cfg("resolution.mpp=0.25", "resolution.target_mpp=0.5", "tiling.patch_size=100"),
                      log=lambda m: None)
    (r,) = res.rows
    assert r["patch_size_level0"] == 200  # 100 px at 0.5 um/px = 200 px at 0.25 um/px
    (item,) = load_prepared(tmp_path / "out")
    xy, patch = next(item.patches())
    assert patch.shape == (100, 100, 3)


def test_target_resolution_without_mpp_is_skipped(tmp_path):
    rgb, _ = smear()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path / "a.png")], tmp_path / "out", cfg("resolution.target_mpp=0.5"),
                    log=lambda m: None)
    (s,) = rows(tmp_path / "out" / "skipped.csv")
    assert "resolution unknown" in s["reason"]


def test_small_images_whole_and_blank_dropped(tmp_path):
    cell, _ = smear(h=40, w=40, cells=((20, 20, 12),))
    blank, _ = smear(h=40, w=40, cells=())
    Image.fromarray(cell).save(tmp_path / "cell.png")
    Image.fromarray(blank).save(tmp_path / "blank.png")
    res = run_prepare([str(tmp_path)], tmp_path / "out", cfg(), log=lambda m: None)
    (r,) = res.rows
    assert r["whole"] is True and r["n_patches"] == 1 and r["id"] == "cell"
    assert "no foreground" in res.skipped[0].reason
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path / "blank.png")], tmp_path / "out2", cfg(), log=lambda m: None)
    # refusing small images is an option
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path / "cell.png")], tmp_path / "out3", cfg("tiling.keep_small_whole=false"),
                    log=lambda m: None)
    assert "smaller than one patch" in rows(tmp_path / "out3" / "skipped.csv")[0]["reason"]


def test_resume_reuses_and_config_change_recomputes(folder, tmp_path):
    out = tmp_path / "out"
    run_prepare([str(folder)], out, cfg("tiling.patch_size=64"), log=lambda m: None)
    again = run_prepare([str(folder)], out, cfg("tiling.patch_size=64"), log=lambda m: None)
    assert again.reused == 2
    changed = run_prepare([str(folder)], out, cfg("tiling.patch_size=32"), log=lambda m: None)
    assert changed.reused == 0


def test_multiprocess_matches_single(folder, tmp_path):
    a = run_prepare([str(folder)], tmp_path / "a", cfg("tiling.patch_size=64"), log=lambda m: None)
    b = run_prepare([str(folder)], tmp_path / "b", cfg("tiling.patch_size=64", "output.workers=2"),
                    log=lambda m: None)
    assert [r["n_patches"] for r in a.rows] == [r["n_patches"] for r in b.rows]


def test_materialize_png_and_webdataset(folder, tmp_path):
    res = run_prepare([str(folder)], tmp_path / "png", cfg("tiling.patch_size=64", "output.materialize=png"),
                      log=lambda m: None)
    files = list((tmp_path / "png" / "patches").rglob("*.png"))
    assert len(files) == res.n_patches and Image.open(files[0]).size == (64, 64)
    res = run_prepare([str(folder)], tmp_path / "wds",
                      cfg("tiling.patch_size=64", "output.materialize=webdataset", "output.shard_size=5"),
                      log=lambda m: None)
    shards = sorted((tmp_path / "wds" / "shards").glob("*.tar"))
    names = [n for s in shards for n in tarfile.open(s).getnames()]
    assert len(shards) == -(-res.n_patches // 5)
    assert len([n for n in names if n.endswith(".png")]) == res.n_patches
    assert len([n for n in names if n.endswith(".json")]) == res.n_patches
