"""Z-stacks through ``cytofm prepare --z`` and ``extract``: OME-TIFFs written by tifffile in the test from
a real evaluation field (a synthetic smear without the shared data), defocused by plane; a field tilted
through focus (sharp at plane 0 on the left, plane 4 on the right) for the per-patch choice and EDF."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from cytofm.data.prepare.focus import focus_score
from cytofm.data.prepare.prepared import load_prepared
from cytofm.data.prepare.run import run_prepare
from cytofm.data.sources.zstack.edf import MARGIN_PX, fuse
from cytofm.data.sources.zstack.source import ZStackSource, parse_policy
from cytofm.data.sources.zstack.stack import ZStackError, is_zstack_file

from tests.helpers import defocus_stack, eval_field, prepare_cfg, write_ome_zstack

W, H = 640, 256


def _tilted(d, compression=None):
    """A 5-plane stack of a 640 x 256 field sharp at plane 0 on its left 40 %, plane 4 on its right 40 %."""
    field = np.concatenate([eval_field(H, W // 2), eval_field(H, W // 2)[:, ::-1]], 1)
    planes = defocus_stack(field, (0, 4))
    (d / "in").mkdir(parents=True)
    write_ome_zstack(d / "in" / "tilted.ome.tif", planes, compression=compression)
    return d, planes


@pytest.fixture(scope="module")
def tilted(tmp_path_factory):
    return _tilted(tmp_path_factory.mktemp("tilted"))


@pytest.mark.parametrize("compression, select", [(None, "focus"), ("zlib", "bytes"), ("zlib", "focus"),
                                                  ("jpeg", "auto")])
def test_best_records_each_patchs_sharp_plane(tmp_path, compression, select):
    if compression == "jpeg":
        pytest.importorskip("imagecodecs", reason="JPEG tiles need imagecodecs (the [zstack] extra)")
    d, planes = _tilted(tmp_path / "src", compression)
    if compression == "jpeg":  # lossy: the planes are what the file holds
        planes = tifffile.imread(d / "in" / "tilted.ome.tif")
    with ZStackSource(d / "in" / "tilted.ome.tif") as s:
        assert s.select == ("bytes" if compression == "jpeg" else "focus")  # auto: bytes for lossy tiles
    cfg = prepare_cfg("tiling.patch_size=64", "zstack.z=best", f"zstack.select={select}")
    run_prepare([str(d / "in")], tmp_path / "out", cfg, log=lambda m: 0)
    (it,) = load_prepared(tmp_path / "out")
    xy, z = it.coords(), it.planes()
    assert it.kind == "zstack" and it.z == "best" and len(z) == len(xy)
    left, right = xy[:, 0] + 64 <= 0.4 * W, xy[:, 0] >= 0.6 * W
    assert left.sum() >= 8 and right.sum() >= 8
    assert (z[left] == 0).all() and (z[right] == 4).all()  # the planted plane, patch by patch
    with h5py.File(it.coords_path) as f:
        focus, attrs = f["focus"][:], dict(f.attrs)
    assert (attrs["n_planes"], attrs["z_spacing_um"], attrs["z_policy"]) == (5, 1.5, "best")
    for k in np.flatnonzero(left)[:3]:  # the focus stored is the chosen plane's, read as it is embedded
        x, y = xy[k]
        assert focus[k] == pytest.approx(focus_score(planes[0, y:y + 64, x:x + 64])[0], abs=0.02)
    (p,) = list(it.patches())[:1]
    assert np.array_equal(p[1], planes[z[0], xy[0, 1]:xy[0, 1] + 64, xy[0, 0]:xy[0, 0] + 64])


def test_all_gives_every_plane_its_own_patch_and_a_plane_number_one(tilted, tmp_path):
    d, planes = tilted
    run_prepare([str(d / "in")], tmp_path / "all", prepare_cfg("tiling.patch_size=64", "zstack.z=all"),
                log=lambda m: 0)
    run_prepare([str(d / "in")], tmp_path / "two", prepare_cfg("tiling.patch_size=64", "zstack.z=2"),
                log=lambda m: 0)
    (a,), (two,) = load_prepared(tmp_path / "all"), load_prepared(tmp_path / "two")
    assert len(a.coords()) == 5 * len(two.coords())
    assert list(a.planes()[:10]) == [0, 1, 2, 3, 4] * 2 and (a.coords()[:5] == a.coords()[0]).all()
    assert (two.planes() == 2).all() and two.z == "2"
    assert len(set(a.planes())) == 5
    x, y = two.coords()[0]
    assert np.array_equal(next(two.patches())[1], planes[2, y:y + 64, x:x + 64])


def test_edf_is_sharper_than_every_plane_and_seam_free(tilted):
    _, planes = tilted
    with ZStackSource(tilted[0] / "in" / "tilted.ome.tif", z="edf") as s:
        whole = s.read(0, 0, (W, H))
        parts = np.concatenate([s.read(0, 0, (W // 2 + 3, H)), s.read(W // 2 + 3, 0, (W // 2 - 3, H))], 1)
        one = s.read(100, 40, 64)
    assert np.array_equal(parts, whole)  # fused apart, joined without a seam
    assert np.array_equal(one, whole[40:104, 100:164])
    edf, best_plane = focus_score(whole)[0], max(focus_score(p)[0] for p in planes)
    assert edf > best_plane + 0.1, (edf, [focus_score(p)[0] for p in planes])
    # where one plane is sharp the fused image is that plane
    m = MARGIN_PX
    assert np.abs(whole[m:-m, m:150].astype(int) - planes[0, m:-m, m:150]).mean() < 1.0
    assert np.abs(whole[m:-m, -150:-m].astype(int) - planes[4, m:-m, -150:-m]).mean() < 1.0


def test_fuse_of_identical_planes_is_the_plane():
    p = eval_field(96, 96)
    assert np.array_equal(fuse(np.stack([p, p, p])), p)


def test_bad_planes_and_single_plane_files(tilted, tmp_path):
    d, planes = tilted
    assert parse_policy("EDF") == "edf" and parse_policy(3, 5) == 3
    with pytest.raises(ZStackError, match="no plane 5; the planes are 0 to 4"):
        parse_policy("5", 5)
    with pytest.raises(ZStackError, match="select=bytes needs compressed tiles"):
        ZStackSource(d / "in" / "tilted.ome.tif", select="bytes")
    res = run_prepare([str(d / "in")], tmp_path / "o", prepare_cfg("tiling.patch_size=64"), log=lambda m: 0)
    assert res.rows[0]["z"] == "best"
    with pytest.raises(Exception, match="nothing usable"):
        run_prepare([str(d / "in")], tmp_path / "o7", prepare_cfg("tiling.patch_size=64", "zstack.z=7"),
                    log=lambda m: 0)
    assert "no plane 7; the planes are 0 to 4" in (tmp_path / "o7" / "skipped.csv").read_text()
    # a flat TIFF is an image as before; the manifest's plane columns stay empty for it
    (tmp_path / "flat").mkdir()
    tifffile.imwrite(tmp_path / "flat" / "f.tif", planes[0], photometric="rgb")
    assert not is_zstack_file(tmp_path / "flat" / "f.tif") and is_zstack_file(d / "in" / "tilted.ome.tif")
    res = run_prepare([str(tmp_path / "flat")], tmp_path / "of", prepare_cfg("tiling.patch_size=64"),
                      log=lambda m: 0)
    assert (res.rows[0]["kind"], res.rows[0]["n_planes"], res.rows[0]["z"]) == ("image", "", "")
    assert load_prepared(tmp_path / "of")[0].planes() is None


def test_cells_get_their_sharpest_plane(tilted, tmp_path):
    from cytofm.data.cells.store import read_cells
    from cytofm.features.items import cell_items

    d, _ = tilted
    for policy in ("best", "all", "3"):
        out = tmp_path / policy
        cfg = prepare_cfg("cells.enabled=true", "cells.typical_diameter_um=8", f"zstack.z={policy}")
        run_prepare([str(d / "in")], out, cfg, log=lambda m: 0)
        cells = read_cells(out / "cells" / "tilted.ome.h5")
        x = cells.centre[:, 0]
        left, right = x < 0.35 * W, x > 0.65 * W
        assert left.sum() >= 2 and right.sum() >= 2, len(cells)
        (item,), _ = cell_items(out, None)
        if policy == "3":
            assert (cells.plane == 3).all() and (item.planes == 3).all()
            continue
        assert (cells.plane[left] == 0).all() and (cells.plane[right] == 4).all()
        assert "z" in (out / "cells.csv").read_text().splitlines()[0].split(",")
        # each crop from the cell's own plane (under all too: instance k stays cell k for counts, GeoJSON)
        assert np.array_equal(item.planes, cells.plane) and len(item.coords) == len(cells)


def test_planes_in_shards_whole_images_and_a_user_column_named_z(tilted, tmp_path):
    import tarfile

    from cytofm.features.items import collect_items

    d, planes = tilted
    cfg = prepare_cfg("tiling.patch_size=64", "zstack.z=all", "output.materialize=webdataset")
    run_prepare([str(d / "in")], tmp_path / "sh", cfg, log=lambda m: 0)
    (it,) = load_prepared(tmp_path / "sh")
    names = [m.name for t in sorted((tmp_path / "sh" / "shards").glob("*.tar"))
             for m in tarfile.open(t).getmembers() if m.name.endswith(".png")]
    assert len(names) == len(set(names)) == len(it.coords())  # one member per plane of every patch
    from cytofm.data.prepare.shards import parse_shard_key, shard_key

    assert parse_shard_key(shard_key("a.b", 3, 4, 2)) == parse_shard_key(shard_key("a.b", 3, 4)) == \
        ("a.b", 3, 4)
    run_prepare([str(d / "in")], tmp_path / "wh", prepare_cfg("tiling.mode=whole", "zstack.z=all"),
                log=lambda m: 0)
    (item,), _ = collect_items(tmp_path / "wh", "tiles", tmp_path / "x")
    assert item.whole and list(item.planes) == [0, 1, 2, 3, 4] and len(item.coords) == 5
    (tmp_path / "m.csv").write_text(f"path,z,n_planes\n{d / 'in' / 'tilted.ome.tif'},7,9\n")
    res = run_prepare([str(tmp_path / "m.csv")], tmp_path / "mz", prepare_cfg("tiling.patch_size=64"),
                      log=lambda m: 0)
    row = res.rows[0]
    assert (row["z"], row["n_planes"], row["src_z"], row["src_n_planes"]) == ("best", 5, "7", "9")
    assert load_prepared(tmp_path / "mz")[0].z == "best"


def test_a_read_under_best_is_the_sharp_planes_region_and_single_planes_refuse_others(tilted):
    from cytofm.data.sources.image_io import ImageReadError
    from cytofm.data.sources.source import ImageSource

    d, planes = tilted
    with ZStackSource(d / "in" / "tilted.ome.tif", select="focus") as s:
        assert np.array_equal(s.read(0, 0, 64), planes[0, :64, :64])
        assert np.array_equal(s.read(W - 64, 0, 64), planes[4, :64, W - 64:])
        assert np.array_equal(s.read(0, 0, 64, z=3), planes[3, :64, :64])
    flat = ImageSource("flat.png", array=planes[0])
    assert np.array_equal(flat.read(0, 0, 32, z=0), flat.read(0, 0, 32))
    with pytest.raises(ImageReadError, match="flat.png: a single plane; no plane 2"):
        flat.read(0, 0, 32, z=2)
