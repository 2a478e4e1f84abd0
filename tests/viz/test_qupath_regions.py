"""Attention scored against QuPath regions (polygons, not only boxes) and written as QuPath GeoJSON."""

import csv
import json
import time

import numpy as np
import pytest
import yaml
from PIL import Image
from shapely.geometry import Point, Polygon, box
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.data.annotations.geojson import annotation_feature, read_annotations, write_feature_collection
from cytofm.features.store import write_item
from cytofm.viz.heatmaps import attention_geojson, mil_heatmaps
from cytofm.viz.localization import (
    RegionTarget,
    boxes_mask,
    localisation_target,
    map_scores,
    patch_scores,
    pixel_target,
)

from tests.helpers import qupath_geojson_problems, smear

runner = CliRunner()
GRID = np.array([(x, y) for y in range(0, 40, 10) for x in range(0, 40, 10)])  # 4 x 4 patches of 10 px


def _qupath(path, regions):
    write_feature_collection(path, [annotation_feature(g, classification=c) for c, g in regions])


def test_a_box_polygon_scores_exactly_as_the_voc_box():
    b = [10, 10, 25, 20]
    target = localisation_target([box(*b)], (40, 40))
    assert isinstance(target, RegionTarget)
    assert isinstance(localisation_target([np.array(b, float)], (40, 40)), np.ndarray)  # VOC: the mask
    for w in (np.eye(16)[5], np.ones(16), np.eye(16)[6] * 3):
        assert patch_scores(w, GRID, 10, target) == patch_scores(w, GRID, 10, boxes_mask([b], (40, 40)))
    heat = np.random.default_rng(0).random((40, 40))
    assert map_scores(heat, pixel_target([box(*b)], (40, 40))) == map_scores(heat, boxes_mask([b], (40, 40)))


def test_polygon_mass_is_its_area_not_its_bounding_box():
    tri = Polygon([(20, 10), (20, 20), (10, 20)])  # half of patch (10, 10); its box would be all of it
    s = patch_scores(np.eye(16)[5], GRID, 10, localisation_target([tri], (40, 40)))
    assert s["mass"] == pytest.approx(0.5) and s["chance_mass"] == pytest.approx(0.5 / 16)
    assert s["hit"]  # the patch centre (pixel (15, 15), sampled at 15.5, 15.5) is below the diagonal
    s = patch_scores(np.eye(16)[5], GRID, 10, localisation_target([Polygon([(10, 10), (19, 10), (10, 19)])],
                                                                  (40, 40)))
    assert not s["hit"] and s["chance_hit"] == 0


def test_whole_slide_regions_are_scored_without_a_level0_mask():
    coords = np.array([(x, y) for y in range(0, 200_000, 20_000) for x in range(0, 200_000, 20_000)])
    w = np.zeros(len(coords))
    w[11] = 1.0  # the patch at (20000, 20000)
    t0 = time.perf_counter()
    s = patch_scores(w, coords, 20_000, localisation_target([box(20_000, 20_000, 30_000, 40_000)],
                                                            (200_000, 200_000)))
    assert time.perf_counter() - t0 < 2 and s["mass"] == pytest.approx(0.5) and not s["hit"]


def _store(root, item, path, coords):
    (root / "features").mkdir(parents=True)
    write_item(root / "features" / f"{item}.h5", np.random.default_rng(0).normal(size=(len(coords), 8)),
               np.asarray(coords), {"patch_size": 32, "patch_size_level0": 32, "source_path": str(path)})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "path", "h5", "n_instances", "label"])
        w.writeheader()
        w.writerow({"id": item, "path": str(path), "h5": f"features/{item}.h5", "n_instances": len(coords),
                    "label": "a"})


def test_mil_heatmap_scores_qupath_regions_and_writes_qupath_tiles(tmp_path):
    rgb, _ = smear(96, 128, cells=((80, 48, 14),))
    Image.fromarray(rgb).save(tmp_path / "field1.jpg")
    coords = [(x, y) for y in range(0, 96, 32) for x in range(0, 128, 32)]
    _store(tmp_path / "store", "field1", tmp_path / "field1.jpg", coords)
    run = tmp_path / "mil"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"features": str(tmp_path / "store")}))
    w = np.full(len(coords), 0.01)
    w[coords.index((64, 32))] = 1.0
    np.savez(run / "attention_0.npz", field1=w / w.sum())
    (tmp_path / "ann").mkdir()
    _qupath(tmp_path / "ann" / "field1.geojson", [("WBC", box(66, 34, 94, 62)), ("RBC", box(0, 0, 20, 20))])
    r = runner.invoke(app, ["heatmap", "--mil", str(run), "--boxes", str(tmp_path / "ann"), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    (row,) = csv.DictReader(open(tmp_path / "o" / "localization.csv"))
    mask = boxes_mask([[66, 34, 94, 62]], (96, 128))  # the same box as VOC: the same scores
    want = patch_scores(w / w.sum(), np.array(coords), 32, mask)
    assert row["hit"] == "True" and float(row["mass"]) == pytest.approx(want["mass"])
    assert float(row["chance_mass"]) == pytest.approx(want["chance_mass"])
    out = tmp_path / "o" / "field1.geojson"
    assert qupath_geojson_problems(out) == []
    tiles = read_annotations(out)
    assert [t.geometry.bounds[:2] for t in tiles] == [tuple(map(float, c)) for c in coords]
    assert sum(t.measurements["Attention"] for t in tiles) == pytest.approx(1.0)
    mil_heatmaps(tmp_path / "store", {"field1": w / w.sum()}, tmp_path / "p", log=lambda m: None,
                 predictions={"field1": ("a", {"a": 0.7, "b": 0.3})})
    *_, pred = read_annotations(tmp_path / "p" / "field1.geojson")
    assert (pred.object_type, pred.classification) == ("annotation", "a")
    assert pred.geometry.bounds == (0, 0, 128, 96)
    assert pred.measurements == {"P(a)": 0.7, "P(b)": 0.3}


def test_vit_heatmap_writes_a_tile_per_patch_and_scores_a_round_cell(tmp_path):
    d = tmp_path / "cells"
    d.mkdir()
    Image.fromarray(smear(48, 48, cells=((24, 24, 10),))[0]).save(d / "c0.png")
    (tmp_path / "ann").mkdir()
    cell = Point(24, 24).buffer(10)
    _qupath(tmp_path / "ann" / "c0.geojson", [("WBC", cell)])
    r = runner.invoke(app, ["heatmap", str(d), "--encoder", "random:vit_tiny_patch16_224", "--boxes",
                            str(tmp_path / "ann"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    (row,) = csv.DictReader(open(tmp_path / "o" / "localization.csv"))
    assert float(row["chance_mass"]) == pytest.approx(pixel_target([cell], (48, 48)).sum() / 48 ** 2)
    assert float(row["chance_mass"]) == pytest.approx(cell.area / 48 ** 2, rel=0.05)  # area, not its box
    out = tmp_path / "o" / "c0.geojson"
    assert qupath_geojson_problems(out) == []
    tiles = read_annotations(out)
    assert len(tiles) == 14 * 14 and {t.object_type for t in tiles} == {"tile"}  # the ViT's 14 x 14 grid
    assert sum(t.geometry.area for t in tiles) == 48 * 48
    assert sum(t.measurements["Attention"] for t in tiles) == pytest.approx(1.0, abs=1e-4)


def test_a_qupath_file_without_the_class_warns(tmp_path):
    d = tmp_path / "cells"
    d.mkdir()
    Image.fromarray(smear(48, 48)[0]).save(d / "c0.png")
    (tmp_path / "ann").mkdir()
    _qupath(tmp_path / "ann" / "c0.geojson", [("RBC", box(0, 0, 4, 4))])
    r = runner.invoke(app, ["heatmap", str(d), "--encoder", "random:vit_tiny_patch16_224", "--boxes",
                            str(tmp_path / "ann"), "--out", str(tmp_path / "o"), "limit=0"])
    assert "1 of 1 items have a file, but none holds a 'WBC' object" in " ".join(r.output.split()), r.output


def test_attention_geojson_tiles_extra_measurements_and_the_prediction(tmp_path):
    coords = np.array([[0, 0], [224, 0], [448, 224]])
    p = attention_geojson(coords, 224, [0.2, 0.3, 0.5], tmp_path / "item.geojson",
                          extra_measurements={"P(malignant)": np.array([0.1, np.nan, 0.9])},
                          prediction=("malignant", {"benign": 0.25, "malignant": 0.75}))
    assert qupath_geojson_problems(p) == []
    *tiles, pred = read_annotations(p)
    assert [t.measurements for t in tiles] == [{"Attention": 0.2, "P(malignant)": 0.1}, {"Attention": 0.3},
                                               {"Attention": 0.5, "P(malignant)": 0.9}]
    assert tiles[2].geometry.bounds == (448, 224, 672, 448)
    assert (pred.object_type, pred.name, pred.classification) == ("annotation", "malignant", "malignant")
    assert pred.geometry.bounds == (0, 0, 672, 448)
    assert pred.measurements == {"P(benign)": 0.25, "P(malignant)": 0.75}
    only = json.loads(attention_geojson(coords, 224, [1, 1, 1], tmp_path / "b.geojson").read_text())
    assert [f["properties"]["objectType"] for f in only["features"]] == ["tile"] * 3
    with pytest.raises(ValueError, match="attention: 2 values for 3 instances"):
        attention_geojson(coords, 224, [1, 1], tmp_path / "c.geojson")
