"""``prepare --geojson`` (the kept patches as QuPath tiles) and ``prepare --roi`` (only patches centred in
QuPath annotations)."""

import csv
import json

import h5py
import pytest
from PIL import Image
from shapely.geometry import Polygon, box
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.data.annotations.geojson import (
    annotation_feature,
    read_annotations,
    tile_feature,
    write_feature_collection,
)
from cytofm.data.prepare.run import NothingUsable, run_prepare
from cytofm.utils.errors import InputError

from tests.helpers import prepare_cfg as cfg
from tests.helpers import qupath_geojson_problems, smear

quiet = {"log": lambda m: None}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def kept(out, item_id):
    with h5py.File(out / "coords" / f"{item_id}.h5") as f:
        return {tuple(xy) for xy in f["coords"][:].tolist()}


@pytest.fixture
def fields(tmp_path):
    """Two 256 x 256 fields with stained material everywhere (16 foreground 64-px patches each)."""
    root = tmp_path / "in"
    root.mkdir()
    cells = tuple((x, y, 20) for x in range(32, 256, 64) for y in range(32, 256, 64))
    for k in range(2):
        Image.fromarray(smear(256, 256, cells=cells, seed=k)[0]).save(root / f"f{k}.png")
    return root


def roi_file(path, *geoms, object_type="annotation"):
    feats = [annotation_feature(g, classification="ROI") if object_type == "annotation"
             else tile_feature(*g.bounds[:2], 10, 10) for g in geoms]
    return write_feature_collection(path, feats)


def test_geojson_output_is_one_qupath_tile_per_kept_patch(fields, tmp_path):
    out = tmp_path / "out"
    res = run_prepare([str(fields / "f0.png")], out, cfg("tiling.patch_size=64", "output.geojson=true"),
                      **quiet)
    (r,) = res.rows
    path = out / "geojson" / f"{r['id']}.geojson"
    assert qupath_geojson_problems(path) == []
    tiles = read_annotations(path)
    assert len(tiles) == r["n_patches"] == len(kept(out, r["id"]))
    assert {t.object_type for t in tiles} == {"tile"}
    assert {tuple(int(v) for v in t.geometry.bounds[:2]) for t in tiles} == kept(out, r["id"])
    assert all(t.geometry.area == 64 * 64 and 0 < t.measurements["Foreground fraction"] <= 1 for t in tiles)
    assert not (tmp_path / "plain" / "geojson").exists()
    run_prepare([str(fields / "f0.png")], tmp_path / "plain", cfg("tiling.patch_size=64"), **quiet)
    assert not (tmp_path / "plain" / "geojson").exists()  # off by default


def test_roi_file_keeps_only_patches_centred_inside(fields, tmp_path):
    # a triangle over the top-left: centres (32, 32), (96, 32), (32, 96) inside; (96, 96) just outside
    roi = roi_file(tmp_path / "roi.geojson", Polygon([(0, 0), (190, 0), (0, 190)]))
    out = tmp_path / "out"
    res = run_prepare([str(fields / "f0.png")], out, cfg("tiling.patch_size=64", f"tiling.roi={roi}"),
                      **quiet)
    (r,) = res.rows
    assert kept(out, r["id"]) == {(0, 0), (64, 0), (0, 64)} and r["n_candidates"] == 16
    with h5py.File(out / "coords" / f"{r['id']}.h5") as f:
        assert f.attrs["roi_path"] == "../roi.geojson" and len(f.attrs["roi_sha256"]) == 64


def test_roi_changes_are_not_reused_on_resume(fields, tmp_path):
    roi, out = tmp_path / "roi.geojson", tmp_path / "out"
    c = cfg("tiling.patch_size=64", f"tiling.roi={roi}")
    roi_file(roi, box(0, 0, 128, 128))
    first = run_prepare([str(fields / "f0.png")], out, c, **quiet)
    assert first.n_patches == 4 and run_prepare([str(fields / "f0.png")], out, c, **quiet).reused == 1
    roi_file(roi, box(0, 0, 256, 64))  # same path, new outline
    again = run_prepare([str(fields / "f0.png")], out, c, **quiet)
    assert again.reused == 0 and kept(out, first.rows[0]["id"]) == {(0, 0), (64, 0), (128, 0), (192, 0)}


def test_roi_folder_skips_sources_without_a_file(fields, tmp_path):
    rois = tmp_path / "rois"
    rois.mkdir()
    roi_file(rois / "f1.geojson", box(128, 128, 256, 256))
    res = run_prepare([str(fields)], tmp_path / "out", cfg("tiling.patch_size=64", f"tiling.roi={rois}"),
                      **quiet)
    assert [r["id"] for r in res.rows] == ["f1"] and res.n_patches == 4
    (s,) = rows(tmp_path / "out" / "skipped.csv")
    assert s["path"].endswith("f0.png") and "no ROI file f0.geojson in" in s["reason"]


def test_rois_reach_worker_processes(fields, tmp_path):
    rois = tmp_path / "rois"
    rois.mkdir()
    roi_file(rois / "f0.geojson", box(0, 0, 64, 128))
    roi_file(rois / "f1.geojson", box(0, 0, 128, 64))
    res = run_prepare([str(fields)], tmp_path / "out",
                      cfg("tiling.patch_size=64", f"tiling.roi={rois}", "output.workers=2"), **quiet)
    assert kept(tmp_path / "out", "f0") == {(0, 0), (0, 64)}
    assert kept(tmp_path / "out", "f1") == {(0, 0), (64, 0)}
    assert res.n_patches == 4


def test_roi_without_annotations_or_outside_the_foreground_is_a_reason(fields, tmp_path):
    rois = tmp_path / "rois"
    rois.mkdir()
    roi_file(rois / "f0.geojson", box(0, 0, 50, 50), object_type="tile")  # tiles outline nothing
    roi_file(rois / "f1.geojson", box(1000, 1000, 1100, 1100))  # off the image
    with pytest.raises(NothingUsable):
        run_prepare([str(fields)], tmp_path / "out", cfg("tiling.patch_size=64", f"tiling.roi={rois}"),
                    **quiet)
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in rows(tmp_path / "out" / "skipped.csv")}
    assert "has no annotation with an area" in reasons["f0.png"]
    assert "no foreground patch has its centre inside the ROI (f1.geojson): all 16 lie outside" in reasons[
        "f1.png"]


def test_roi_file_for_several_sources_or_broken_is_refused(fields, tmp_path):
    roi = roi_file(tmp_path / "roi.geojson", box(0, 0, 64, 64))
    with pytest.raises(InputError, match="one GeoJSON file outlines one source, but 2 were found"):
        run_prepare([str(fields)], tmp_path / "a", cfg(f"tiling.roi={roi}"), **quiet)
    roi.write_text("{not json")
    with pytest.raises(InputError, match=f"--roi: {roi}: not valid JSON"):
        run_prepare([str(fields / "f0.png")], tmp_path / "b", cfg(f"tiling.roi={roi}"), **quiet)
    with pytest.raises(InputError, match="no such file or folder"):
        run_prepare([str(fields / "f0.png")], tmp_path / "c", cfg(f"tiling.roi={tmp_path / 'nope'}"), **quiet)


def test_broken_roi_in_a_folder_skips_that_source_only(fields, tmp_path):
    rois = tmp_path / "rois"
    rois.mkdir()
    (rois / "f0.geojson").write_text('{"type": "Point"}')
    roi_file(rois / "f1.json", box(0, 0, 64, 64))
    res = run_prepare([str(fields)], tmp_path / "out", cfg("tiling.patch_size=64", f"tiling.roi={rois}"),
                      **quiet)
    assert [r["id"] for r in res.rows] == ["f1"] and res.n_patches == 1
    (s,) = rows(tmp_path / "out" / "skipped.csv")
    assert "a bare Point, not Features" in s["reason"]


def test_cli_roi_and_geojson_flags(fields, tmp_path):
    roi = roi_file(tmp_path / "roi.geojson", box(0, 0, 128, 64))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["prepare", str(fields / "f1.png"), "--out", str(out), "--roi", str(roi),
                                 "--geojson", "--patch-size", "64", "--workers", "1"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "geojson" / "f1.geojson").read_text())
    assert len(doc["features"]) == 2 and qupath_geojson_problems(out / "geojson" / "f1.geojson") == []
    written = (out / "config.yaml").read_text()
    assert f"roi: {roi}" in written and "geojson: true" in written


def test_whole_images_are_kept_when_their_centre_is_in_the_roi(tmp_path):
    Image.fromarray(smear(40, 40, cells=((20, 20, 12),))[0]).save(tmp_path / "cell.png")
    inside = roi_file(tmp_path / "in.geojson", box(10, 10, 30, 30))
    res = run_prepare([str(tmp_path / "cell.png")], tmp_path / "a", cfg(f"tiling.roi={inside}"), **quiet)
    (r,) = res.rows
    assert r["whole"] is True and r["n_patches"] == 1
    outside = roi_file(tmp_path / "out.geojson", box(0, 0, 10, 10))
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path / "cell.png")], tmp_path / "b", cfg(f"tiling.roi={outside}"), **quiet)
