"""Images above the memory budget are read in regions through libvips, with the same pixels."""

import csv

import h5py
import numpy as np
import pytest
from PIL import Image

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare
from cytofm.data.sources import image_io, large_image
from cytofm.data.sources.image_io import ImageTooLarge, read_rgb
from cytofm.data.sources.source import ImageSource, open_source

from tests.helpers import smear

pytest.importorskip("pyvips")


@pytest.fixture
def small_budget(monkeypatch):
    """A budget of 0.3 MB (100k pixels): a 400x300 field counts as 'too large to decode whole'."""
    monkeypatch.setattr(image_io, "BUDGET_PIXELS", 100_000)
    monkeypatch.setattr(large_image, "BUDGET_PIXELS", 100_000)


def _field(tmp_path, name="f.png", mode="RGB"):
    rgb, _ = smear(h=300, w=400, cells=((80, 60, 25), (300, 200, 40)), seed=3)
    im = Image.fromarray(rgb)
    if mode == "RGBA":
        a = np.full((300, 400), 255, np.uint8)
        a[:, :100] = 0  # transparent strip: white after compositing
        im = Image.fromarray(np.dstack([rgb, a]), "RGBA")
    elif mode == "I;16":
        im = Image.fromarray(rgb[..., 1].astype(np.uint16) * 16)  # 12-bit gray in a 16-bit container
    p = tmp_path / name
    im.save(p)
    return p


def test_above_budget_read_in_regions_with_identical_pixels(tmp_path, small_budget):
    p = _field(tmp_path)
    with pytest.raises(ImageTooLarge, match=r"image 400x300 needs 0 MB decoded, above the memory budget"):
        read_rgb(p)
    big = open_source(p, "image")
    assert isinstance(big, large_image.LargeImageSource) and (big.width, big.height) == (400, 300)
    ref = ImageSource(p, array=np.asarray(Image.open(p).convert("RGB")))
    for x, y, s in ((0, 0, 96), (150, 100, 64), (350, 250, 96), (-20, -10, 50)):  # inside and across borders
        assert np.array_equal(big.read(x, y, s), ref.read(x, y, s))
    diff = np.abs(big.read(10, 20, 192, 96).astype(int) - ref.read(10, 20, 192, 96).astype(int))
    assert diff.mean() < 2.0  # resampled: both bilinear, different libraries
    assert np.array_equal(big.thumbnail(2048)[0], ref.thumbnail(2048)[0])
    with pytest.raises(image_io.ImageReadError, match="region of 400x300 px is above the memory budget"):
        big.read(0, 0, (400, 300))


@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_conversions_match_the_in_memory_reader(tmp_path, small_budget, mode):
    p = _field(tmp_path, mode=mode)
    big = open_source(p, "image")
    image_io.BUDGET_PIXELS = 10**9  # the in-memory reference
    ref = ImageSource(p)
    image_io.BUDGET_PIXELS = 100_000
    assert np.abs(big.read(0, 0, 200).astype(int) - ref.read(0, 0, 200).astype(int)).max() <= 1


def test_prepare_gives_the_same_patches_in_regions(tmp_path, small_budget, monkeypatch):
    p = _field(tmp_path)
    cfg = build_config(PrepareConfig, overrides=["output.workers=1", "output.qa_thumbnails=-1",
                                                 "tiling.patch_size=64", "output.materialize=png"])
    run_prepare([str(p)], tmp_path / "regions", cfg, log=lambda m: None)
    monkeypatch.setattr(image_io, "BUDGET_PIXELS", 10**9)
    run_prepare([str(p)], tmp_path / "memory", cfg, log=lambda m: None)
    (a,), (b,) = (list(csv.DictReader(open(tmp_path / d / "manifest.csv"))) for d in ("regions", "memory"))
    assert "read in regions (libvips)" in a["conversion"] and a["n_patches"] == b["n_patches"]
    with (h5py.File(tmp_path / "regions" / a["coords"]) as f,
          h5py.File(tmp_path / "memory" / b["coords"]) as g):
        assert np.array_equal(f["coords"][:], g["coords"][:])
    for png in (tmp_path / "memory" / "patches").rglob("*.png"):
        other = tmp_path / "regions" / png.relative_to(tmp_path / "memory")
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(other)))


def test_without_pyvips_a_clear_message_and_a_skip(tmp_path, small_budget, monkeypatch):
    monkeypatch.setattr(large_image, "pyvips", None)
    monkeypatch.setattr(large_image, "VIPS_ERROR", "No module named 'pyvips'")
    p = _field(tmp_path)
    Image.fromarray(smear(h=200, w=200, seed=1)[0][:150, :150]).save(tmp_path / "small.png")
    cfg = build_config(PrepareConfig, overrides=["output.workers=1", "tiling.patch_size=64"])
    run_prepare([str(tmp_path)], tmp_path / "out", cfg, log=lambda m: None)
    (row,) = list(csv.DictReader(open(tmp_path / "out" / "skipped.csv")))
    assert row["path"].endswith("f.png") and "image 400x300 is above the memory budget" in row["reason"]
    assert "pip install pyvips pyvips-binary" in row["reason"]
    assert p.name not in open(tmp_path / "out" / "manifest.csv").read()


FORK_AFTER_VIPS = """
import os, sys
os.environ["CYTOFM_IMAGE_BUDGET_MB"] = "0.1"
from cytofm.config.loader import build_config
from cytofm.data.prepare.run import run_prepare
from cytofm.data.prepare.config import PrepareConfig
from cytofm.features.config import ExtractConfig
from cytofm.features.extract import run_extract
from cytofm.models.zoo import create_encoder

def main():
    root = sys.argv[1]
    cfg = build_config(PrepareConfig, overrides=["output.workers=1", "tiling.patch_size=128",
                                                 "output.qa_thumbnails=0"])
    # libvips runs in this process
    rows = run_prepare([root + "/in"], root + "/prep", cfg, log=lambda m: None).rows
    assert all("libvips" in r["conversion"] for r in rows)
    extract = ExtractConfig(input=root + "/prep", mode="tiles", out=root + "/f", workers=1)
    # then a worker process is started
    r = run_extract(create_encoder("random:vit_tiny_patch16_224"), extract, log=lambda m: None)
    print("extracted", r["extracted"])

if __name__ == "__main__":
    main()
"""


def test_worker_processes_after_libvips_do_not_hang(tmp_path):
    """A process forked after libvips ran inherits its locked thread pool and hangs; workers come from a
    fork server then. Before that fix this test hit its timeout."""
    import os
    import subprocess
    import sys

    for i in range(2):
        (tmp_path / "in").mkdir(exist_ok=True)
        Image.fromarray(smear(h=300, w=400, seed=i)[0]).save(tmp_path / "in" / f"f{i}.png")
    script = tmp_path / "run.py"
    script.write_text(FORK_AFTER_VIPS)
    src = os.path.join(os.path.dirname(__file__), "..", "..", "..", "src")
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                       timeout=180, env=dict(os.environ, PYTHONPATH=os.path.abspath(src)))
    assert r.returncode == 0 and "extracted 2" in r.stdout, r.stderr[-2000:]
