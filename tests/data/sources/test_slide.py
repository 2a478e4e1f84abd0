"""Whole-slide images through OpenSlide, with a pyramidal TIFF the test writes itself."""

import numpy as np
import pytest
import tifffile

from cytofm.data.prepare.run import run_prepare

from tests.helpers import prepare_cfg as cfg

openslide = pytest.importorskip("openslide", reason="OpenSlide not installed (pip install 'cytofm[wsi]')")


def write_pyramid(path, mpp=0.25):
    a = np.full((1024, 1536, 3), (226, 224, 220), np.uint8)
    a[256:512, 512:768] = (120, 80, 160)  # one stained cluster
    with tifffile.TiffWriter(path) as t:
        kw = dict(tile=(256, 256), photometric="rgb", compression="zlib")
        t.write(a, resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER", **kw)
        t.write(a[::2, ::2], subfiletype=1, **kw)
        t.write(a[::4, ::4], subfiletype=1, **kw)
    return a


def test_pyramidal_tiff_is_read_through_openslide_and_tiled(tmp_path):
    write_pyramid(tmp_path / "slide.tif")
    res = run_prepare([str(tmp_path / "slide.tif")], tmp_path / "out",
                      cfg("resolution.target_mpp=0.5", "tiling.patch_size=128"), log=lambda m: None)
    (r,) = res.rows
    assert r["kind"] == "slide" and r["mpp"] == 0.25
    assert r["patch_size_level0"] == 256 and r["patch_level"] == 1  # 2x downsample read from level 1
    from cytofm.data.prepare.prepared import load_prepared

    (item,) = load_prepared(tmp_path / "out")
    coords = item.coords()
    assert coords.tolist() == [[512, 256]]  # exactly the stained 256x256 level-0 block
    (xy, patch), = list(item.patches())
    assert patch.shape == (128, 128, 3)
    assert np.abs(patch.astype(int) - (120, 80, 160)).max() <= 2


def test_broken_slide_is_skipped(tmp_path):
    (tmp_path / "broken.svs").write_bytes(b"II*\x00garbage")
    write_pyramid(tmp_path / "ok.tif")
    res = run_prepare([str(tmp_path)], tmp_path / "out", cfg("tiling.patch_size=256"), log=lambda m: None)
    assert [r["id"] for r in res.rows] == ["ok"]
    assert "broken.svs" in res.skipped[0].path and "OpenSlide" in res.skipped[0].reason


def test_slide_patches_are_scored_for_focus_when_asked(tmp_path):
    """Slides are not scored by default (every kept patch would be read once more); ``focus=all`` scores
    each patch as it is embedded (here from pyramid level 1), as the patch scored alone; ``min_focus``
    without scores is refused with the fix."""
    import h5py

    from cytofm.data.prepare.focus import focus_score
    from cytofm.data.prepare.run import NothingUsable

    a = np.full((1024, 1536, 3), (226, 224, 220), np.uint8)
    a[256:512, 512:768] = (120, 80, 160)
    a[300:400, 600:700] = (60, 30, 110)  # an edge inside the cluster: structure to score
    with tifffile.TiffWriter(tmp_path / "edged.tif") as t:
        kw = dict(tile=(256, 256), photometric="rgb", compression="zlib")
        t.write(a, resolution=(4e4, 4e4), resolutionunit="CENTIMETER", **kw)
        t.write(a[::2, ::2], subfiletype=1, **kw)
    base, src = ("resolution.target_mpp=0.5", "tiling.patch_size=128"), [str(tmp_path / "edged.tif")]
    run_prepare(src, tmp_path / "default", cfg(*base), log=lambda m: None)
    with h5py.File(tmp_path / "default" / "coords" / "edged.h5") as f:
        assert "focus" not in f
    run_prepare(src, tmp_path / "all", cfg(*base, "foreground.focus=all"), log=lambda m: None)
    with h5py.File(tmp_path / "all" / "coords" / "edged.h5") as f:
        (score,) = f["focus"][:]
    level1 = np.ascontiguousarray(a[256:512:2, 512:768:2])
    assert score == pytest.approx(focus_score(level1, np.array([226.0, 224, 220]))[0], abs=0.02)
    with pytest.raises(NothingUsable):
        run_prepare(src, tmp_path / "min", cfg(*base, "foreground.min_focus=0.1"), log=lambda m: None)
    assert "set foreground.focus=all" in (tmp_path / "min" / "skipped.csv").read_text()
