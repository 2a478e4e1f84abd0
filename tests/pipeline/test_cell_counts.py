"""A cell classifier trained on labelled cells (``probe --cell-points``) and applied by ``predict`` to new
fields: every detected cell classified, each field counted by class, the cells in QuPath with their class."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from cytofm.cli.main import app

from tests.helpers import PLANTED_SIZES, planted_fields, qupath_geojson_problems, smear


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_cell_classifier_counts_the_cells_of_new_fields_by_class(tmp_path):
    points = planted_fields(tmp_path / "train", [1, 2, 3, 4, 5, 3], 0)
    with open(tmp_path / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "kind"])
        w.writerows(points[:-1] + [("train/0_0.png", 5, 5, "small")])  # one on empty glass: unmatched
    runner = CliRunner()
    for args in (["prepare", str(tmp_path / "train"), "--out", str(tmp_path / "prep"), "--preset",
                  "smear_cells", "--cells", *PLANTED_SIZES],
                 ["extract", "--input", str(tmp_path / "prep"), "--mode", "cells", "--encoder",
                  "morphometrics", "--out", str(tmp_path / "store")],
                 ["probe", "--features", str(tmp_path / "store"), "--label", "kind", "--cell-points",
                  str(tmp_path / "points.csv"), "--out", str(tmp_path / "probe"), "--folds", "2", "--seeds",
                  "0", "--methods", "linear"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    assert "35 of 36 labelled cells matched" in r.output
    assert json.loads((tmp_path / "probe" / "cells" / "matching.json").read_text())["matched"] == 35
    rec = json.loads((tmp_path / "probe" / "model.json").read_text())
    assert rec["features"]["store"]["unit"] == "cell" and rec["training"]["group_column"] == "field"
    assert rec["features"]["prepare"]["cells"]["typical_diameter_um"] == 6
    from PIL import Image

    planted_fields(tmp_path / "new", [0, 2, 6], 1)
    Image.fromarray(smear(180, 240, [], seed=7)[0]).save(tmp_path / "new" / "blank.png")  # glass only
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "probe"), "--input", str(tmp_path / "new"),
                            "--out", str(tmp_path / "pred")])
    assert r.exit_code == 0, r.output
    counts = {c["field"]: (int(c["n_cells"]), int(c["n_large"]), int(c["n_small"]))
              for c in _rows(tmp_path / "pred" / "cell_counts.csv")}
    assert counts == {"1_0": (6, 0, 6), "1_1": (6, 2, 4), "1_2": (6, 6, 0)}
    cells = _rows(tmp_path / "pred" / "predictions.csv")
    assert len(cells) == 18 and {c["field"] for c in cells} == set(counts)
    assert all(c["label"] == "" for c in cells)  # a field's own label is no cell's
    summary = (tmp_path / "pred" / "summary.md").read_text()
    assert "18 cell(s) in 3 field(s)/slide(s) classified: large 8, small 10" in summary
    assert "1_1: 6 cells, large 2, small 4" in summary
    assert "1 source(s) left out at prepare and not predicted (e.g. ../../new/blank.png: no foreground" \
        in summary
    qp = tmp_path / "pred" / "geojson" / "1_1.geojson"
    assert qupath_geojson_problems(qp) == []
    objects = json.loads(qp.read_text())["features"]
    names = sorted(o["properties"]["classification"]["name"] for o in objects)
    assert names == ["large"] * 2 + ["small"] * 4
    assert all(o["properties"]["objectType"] == "cell" and "p_large" in o["properties"]["measurements"]
               for o in objects)


def test_cell_points_need_a_store_of_cells_and_the_columns(tmp_path):
    from cytofm.features.store import claim_store

    claim_store(tmp_path / "tiles", {"encoder": "x", "weights_hash": "x", "embed_dim": 2, "input_size": 0,
                                     "mode": "tiles", "tta": False})
    (tmp_path / "points.csv").write_text("image,x,y\n")
    r = CliRunner().invoke(app, ["probe", "--features", str(tmp_path / "tiles"), "--label", "kind",
                                 "--cell-points", str(tmp_path / "points.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "needs a store extracted with --mode cells, not tiles" in r.output


def test_fields_without_cells_are_counted_as_zero():
    from cytofm.pipeline.cell_counts import count_rows

    table = [{"field": "a", "pred": "x", "excluded": False}, {"field": "a", "pred": "y", "excluded": True},
             {"field": "a", "pred": "x", "excluded": False}]
    rows = count_rows(table, ["x", "y"], empty=["b"])
    assert rows == [{"field": "a", "n_cells": 3, "n_x": 2, "n_y": 1, "share_x": 0.6667, "share_y": 0.3333,
                     "excluded": True},
                    {"field": "b", "n_cells": 0, "n_x": 0, "n_y": 0, "share_x": "", "share_y": "",
                     "excluded": False}]
