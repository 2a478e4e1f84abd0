"""The default cell detector on synthetic fields with planted cells of known radius and colour: exact
counts, centres within a pixel, areas in um^2, a touching pair split, a clump kept whole and flagged,
blank glass empty, a cell on a region border counted once, nuclei measured; plug-ins refused clearly and
run through a stand-in model."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from cytofm.data.cells.detect import NoResolution, detect_source
from cytofm.data.cells.plugins import DetectorUnavailable
from cytofm.data.cells.registry import CELL_DETECTORS
from cytofm.data.cells.stains import STAIN_VECTORS, estimate_vectors
from cytofm.data.cells.watershed import detect_otsu, detect_watershed
from cytofm.data.prepare.config import CellsConfig
from cytofm.data.sources.source import ImageSource

from tests.helpers import smear

MPP = 0.25  # a 16 px radius is an 8 um cell
CFG = CellsConfig(typical_diameter_um=8, min_diameter_um=3, max_diameter_um=20)
APART = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]


def _centres(t):
    return sorted(map(tuple, np.round(t.centre).astype(int).tolist()))


def test_planted_cells_are_found_once_each_with_centre_and_area():
    rgb, _ = smear(240, 320, APART, seed=1)
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == len(APART) and not t.clump.any()
    want = {(x, y): r for x, y, r in APART}
    for (cx, cy), area in zip(t.centre, t.measures["area_um2"], strict=True):
        (x, y), r = min(want.items(), key=lambda kv: np.hypot(kv[0][0] - cx, kv[0][1] - cy))
        assert np.hypot(x - cx, y - cy) <= 1.0
        assert area == pytest.approx(np.pi * (r * MPP) ** 2, rel=0.08)
    assert (t.measures["circularity"] > 0.85).all() and (t.measures["eccentricity"] < 0.3).all()
    assert all(len(c) >= 8 for c in t.contour)  # outlines, simplified but round


def test_a_touching_pair_is_split_and_the_baseline_does_not_split_it():
    rgb, _ = smear(200, 240, [(90, 100, 16), (121, 100, 16)], seed=2)  # overlapping by one pixel
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 2 and not t.clump.any()
    assert np.abs(np.sort(t.centre, 0) - [[90, 100], [121, 100]]).max() <= 1.0
    assert len(detect_otsu(rgb, MPP, CFG)) == 1


def test_a_clump_too_large_to_split_is_kept_whole_and_flagged():
    cells = [(100 + 22 * i, 100 + 22 * j, 16) for i in range(5) for j in range(5)]  # 25 overlapping
    rgb, _ = smear(300, 300, cells, seed=3)
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 1 and t.clump.tolist() == [True]


def test_blank_glass_has_no_cells():
    rgb, _ = smear(240, 320, [], seed=4)
    assert len(detect_watershed(rgb, MPP, CFG)) == 0 and len(detect_otsu(rgb, MPP, CFG)) == 0


def test_a_cell_on_a_region_border_is_counted_once():
    """Regions of 128 px: the cells at x=120 and x=250 straddle borders; the result is the whole image's."""
    rgb, _ = smear(240, 320, APART, seed=1)
    src = ImageSource("synthetic.png", MPP, rgb)
    whole = detect_source(src, MPP, CFG)
    tiled = detect_source(src, MPP, CFG.model_copy(update={"region_px": 128}))
    assert len(tiled) == len(whole) == len(APART)
    assert np.abs(np.sort(tiled.centre, 0) - np.sort(whole.centre, 0)).max() < 0.5


def test_detection_at_a_coarser_working_resolution_reports_level_0_coordinates():
    rgb, _ = smear(240, 320, APART, seed=1)
    src = ImageSource("synthetic.png", 0.125, rgb)  # the same pixels called twice as fine: cells half as big
    cfg = CellsConfig(typical_diameter_um=4, min_diameter_um=1.5, max_diameter_um=10, work_mpp=0.25)
    t = detect_source(src, 0.125, cfg)  # detected at half the pixels
    assert len(t) == len(APART)
    for x, y, _ in APART:
        assert np.hypot(*(t.centre - (x, y)).T).min() <= 1.5


def test_a_nucleus_inside_a_cell_is_measured_and_a_red_cell_has_none():
    rgb, _ = smear(200, 200, [(60, 100, 20), (150, 100, 16)], color=(215, 150, 160), seed=5)
    yy, xx = np.mgrid[:200, :200]
    rgb[(xx - 60) ** 2 + (yy - 100) ** 2 <= 10 * 10] = (90, 60, 150)  # a purple nucleus, radius 10
    t = detect_watershed(rgb, MPP, CFG)
    order = np.argsort(t.centre[:, 0])
    ratio = t.measures["nucleus_to_cell"][order]
    assert ratio[0] == pytest.approx(0.25, abs=0.05) and ratio[1] == 0.0
    assert t.measures["nucleus_area_um2"][order][0] == pytest.approx(np.pi * (10 * MPP) ** 2, rel=0.15)
    assert len(t.nucleus[order[0]]) >= 6 and len(t.nucleus[order[1]]) == 0
    assert t.measures["od_nuclear"][order][0] > t.measures["od_nuclear"][order][1]


def test_no_resolution_is_refused_with_the_fix():
    rgb, _ = smear(64, 64, [(32, 32, 10)])
    with pytest.raises(NoResolution, match="resolution.mpp"):
        detect_source(ImageSource("x.png", None, rgb), None, CFG)


def test_stain_vectors_estimated_from_an_image_of_two_planted_stains():
    """Pixels mixing two known OD directions in random amounts: Macenko's estimate recovers both."""
    rng = np.random.default_rng(0)
    a, b = (np.array(STAIN_VECTORS["giemsa"][k]) for k in ("nuclear", "other"))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    amounts = rng.uniform(0, 1.2, (5000, 2)) * (rng.random((5000, 2)) < 0.7)
    od = (amounts @ np.stack([a, b])).reshape(50, 100, 3) + 0.16
    n, o = estimate_vectors(od - 0.16)

    def degrees(u, v):
        return np.degrees(np.arccos(np.clip(u @ v, -1, 1)))

    assert degrees(n, a) < 6 and degrees(o, b) < 6


def test_a_missing_plugin_names_its_package_and_a_missing_weights_file_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cellpose", None)  # not installed
    rgb, _ = smear(64, 64, [(32, 32, 10)])
    with pytest.raises(DetectorUnavailable, match="needs the package 'cellpose'"):
        CELL_DETECTORS.get("cellpose")(rgb, MPP, CFG)
    fake = types.ModuleType("cellpose")
    fake.models = types.SimpleNamespace(CellposeModel=None)
    monkeypatch.setitem(sys.modules, "cellpose", fake)
    monkeypatch.setenv("CYTOFM_CELL_WEIGHTS", str(tmp_path))
    with pytest.raises(DetectorUnavailable, match=f"no weights in {tmp_path}/cellpose"):
        CELL_DETECTORS.get("cellpose")(rgb, MPP, CFG)


def test_a_plugin_runs_through_a_stand_in_model(tmp_path, monkeypatch):
    """A stand-in Cellpose that labels two known disks: cytofm measures what it returns."""
    rgb, _ = smear(120, 160, [(40, 60, 16), (115, 60, 14)], seed=6)
    yy, xx = np.mgrid[:120, :160]
    labels = np.zeros((120, 160), np.int32)
    labels[(xx - 40) ** 2 + (yy - 60) ** 2 <= 16 * 16] = 1
    labels[(xx - 115) ** 2 + (yy - 60) ** 2 <= 14 * 14] = 2
    seen = {}

    class Model:
        def __init__(self, pretrained_model):
            seen["weights"] = pretrained_model

        def eval(self, image, diameter):
            seen["diameter"] = diameter
            return labels, None, None

    fake = types.ModuleType("cellpose")
    fake.models = types.SimpleNamespace(CellposeModel=Model)
    monkeypatch.setitem(sys.modules, "cellpose", fake)
    (tmp_path / "cellpose").mkdir()
    (tmp_path / "cellpose" / "cyto3.pth").write_bytes(b"x")
    monkeypatch.setenv("CYTOFM_CELL_WEIGHTS", str(tmp_path))
    t = CELL_DETECTORS.get("cellpose")(rgb, MPP, CFG)
    assert seen == {"weights": str(tmp_path / "cellpose" / "cyto3.pth"), "diameter": 32.0}
    assert _centres(t) == [(40, 60), (115, 60)]
    assert t.measures["area_um2"][0] == pytest.approx((labels == 1).sum() * MPP * MPP)


def test_prepare_cells_writes_each_sources_cells_and_one_table(tmp_path):
    """``prepare --cells``: cells/<id>.h5 round-trips the detection, cells.csv has one row per cell; a source
    without um/px is skipped with the fix named; blank glass is skipped as prepare skips it, with the reason
    (the detector itself gives zero cells there, tested above)."""
    import csv
    from pathlib import Path

    from PIL import Image
    from typer.testing import CliRunner

    from cytofm.cli.main import app
    from cytofm.data.cells.store import read_cells

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smear(240, 320, APART, seed=1)[0]).save(src / "field.png")
    Image.fromarray(smear(240, 320, [], seed=2)[0]).save(src / "blank.png")
    args = ["prepare", str(src), "--out", str(tmp_path / "out"), "--preset", "smear_cells", "--cells",
            "cells.typical_diameter_um=8", "cells.min_diameter_um=3", "cells.max_diameter_um=20"]
    r = CliRunner().invoke(app, args + ["resolution.mpp=0.25", "--geojson", "--qa", "-1"])
    assert r.exit_code == 0, r.output
    # seen as well as counted: QuPath cells with their nuclei and measurements, outlines on the QA image
    from cytofm.data.annotations.geojson import read_annotations

    from tests.helpers import qupath_geojson_problems

    gj = tmp_path / "out" / "geojson" / "field.geojson"
    assert qupath_geojson_problems(gj) == []
    objects = [o for o in read_annotations(gj, log=lambda m: None) if o.object_type == "cell"]
    assert len(objects) == len(APART) and all(o.measurements["area_um2"] > 0 for o in objects)
    # five cells apart on the glass: every outline seen all round, said in QuPath, cells.csv and the manifest
    assert all(o.measurements["seg_confidence"] == 1.0 for o in objects)
    assert (tmp_path / "out" / "qa" / "field.jpg").is_file()
    cells = read_cells(tmp_path / "out" / "cells" / "field.h5")
    direct = detect_watershed(smear(240, 320, APART, seed=1)[0], MPP, CFG)
    assert np.allclose(np.sort(cells.centre, 0), np.sort(direct.centre, 0), atol=1e-4)
    assert [len(c) for c in cells.contour] == [len(c) for c in direct.contour]
    rows = list(csv.DictReader(open(tmp_path / "out" / "cells.csv")))
    assert len(rows) == len(APART) and {r["item"] for r in rows} == {"field"}
    assert float(rows[0]["area_um2"]) > 0 and rows[0]["clump"] == "False"
    assert {float(r["seg_confidence"]) for r in rows} == {1.0}
    (man,) = [m for m in csv.DictReader(open(tmp_path / "out" / "manifest.csv")) if m["id"] == "field"]
    got = (man["n_cells"], man["n_clumps"], man["clump_area_share"], man["cell_notes"])
    assert got == ("5", "0", "0.0", "")
    blank = list(csv.DictReader(open(tmp_path / "out" / "skipped.csv")))
    assert [Path(b["path"]).name for b in blank] == ["blank.png"] and blank[0]["reason"]
    r = CliRunner().invoke(app, args[:2] + ["--out", str(tmp_path / "nompp")] + args[4:])
    skipped = list(csv.DictReader(open(tmp_path / "nompp" / "skipped.csv")))
    why = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert "resolution.mpp" in why["field.png"] and "no foreground" in why["blank.png"]



def test_qa_thumbnails_draw_each_cell_and_nucleus_outline_where_it_is():
    """On a grey thumbnail at half scale: cyan on a cell's outline, magenta on its nucleus', orange for a
    clump, nothing elsewhere."""
    from PIL import Image

    from cytofm.data.cells.table import CellTable
    from cytofm.data.prepare.qa import draw_cells

    t = CellTable.empty()
    ring = np.array([[20, 20], [60, 20], [60, 60], [20, 60]], np.float32)
    t = CellTable(np.array([[40, 40], [120, 40]], np.float32), np.zeros((2, 4), np.float32),
                  [ring, ring + [80, 0]], [ring / 2 + 20, np.zeros((0, 2), np.float32)],
                  {k: np.zeros(2, np.float32) for k in t.measures}, np.array([False, True]))
    im = np.asarray(draw_cells(Image.new("RGB", (100, 50), (128, 128, 128)), t, 0.5)).astype(int)
    assert im[10, 20].tolist() == [0, 220, 255] and im[10, 60].tolist() == [255, 140, 0]  # top edges
    assert im[15, 20].tolist() == [255, 0, 200]  # the nucleus' top edge: y 30 * 0.5
    assert im[20, 20].tolist() == [128, 128, 128] and (im[40:, :] == 128).all()


def test_a_plugin_failing_on_one_image_skips_that_image_and_the_run_goes_on(tmp_path, monkeypatch):
    import csv
    from pathlib import Path

    from PIL import Image

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    class Model:
        def __init__(self, pretrained_model):
            pass

        def eval(self, image, diameter):
            if image.shape[0] == 240:  # the larger field: the model fails on it
                raise RuntimeError("CUDA out of memory")
            return np.zeros(image.shape[:2], np.int32), None, None

    fake = types.ModuleType("cellpose")
    fake.models = types.SimpleNamespace(CellposeModel=Model)
    monkeypatch.setitem(sys.modules, "cellpose", fake)
    (tmp_path / "w" / "cellpose").mkdir(parents=True)
    (tmp_path / "w" / "cellpose" / "m.pth").write_bytes(b"x")
    monkeypatch.setenv("CYTOFM_CELL_WEIGHTS", str(tmp_path / "w"))
    (tmp_path / "in").mkdir()
    Image.fromarray(smear(240, 320, APART, seed=1)[0]).save(tmp_path / "in" / "bad.png")
    Image.fromarray(smear(200, 200, [(60, 60, 30)], seed=2)[0]).save(tmp_path / "in" / "good.png")
    cfg = build_config(PrepareConfig, "prepare", "smear_cells", values={
        "cells": {"detector": "cellpose"}, "resolution": {"mpp": MPP}, "output": {"workers": 1}})
    res = run_prepare([str(tmp_path / "in")], tmp_path / "out", cfg, log=lambda m: None)
    skipped = list(csv.DictReader(open(tmp_path / "out" / "skipped.csv")))
    assert [Path(s["path"]).name for s in skipped] == ["bad.png"]
    assert "CUDA out of memory" in skipped[0]["reason"]
    assert [r["id"] for r in res.rows] == ["good"] and res.rows[0]["n_cells"] == 0


def test_an_object_too_thin_for_a_distance_peak_is_still_one_cell():
    """A 3 px wide, 80 px long stained bar has no distance peak above the seed threshold: it is seeded at
    one pixel and comes out whole (not dropped, not split)."""
    rgb, _ = smear(120, 160, [], seed=7)
    rgb[60:63, 40:120] = (120, 80, 160)
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 1 and t.measures["area_um2"][0] == pytest.approx(3 * 80 * MPP * MPP, rel=0.1)
