"""Stores made from stores: two feature sets side by side per instance, and detected cells matched to
labelled points as items of their own."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cytofm.features.derived import DerivedStoreError, cells_as_items, combine_stores, match_points
from cytofm.features.store import claim_store, load_store, read_item, write_item
from cytofm.utils.io import write_csv

from tests.helpers import smear


def _store(root, name, dim, feats_by_item):
    ident = {"encoder": name, "weights_hash": name, "embed_dim": dim, "input_size": 0, "mode": "cells",
             "tta": False}
    claim_store(root, ident, {"encoder_spec": name})
    rows = []
    for i, (f, c) in feats_by_item.items():
        write_item(root / "features" / f"{i}.h5", f, c, ident)
        rows.append({"id": i, "path": "", "h5": f"features/{i}.h5", "n_instances": len(f), "label": "x"})
    write_csv(root / "manifest.csv", rows)
    return root


def test_combined_features_are_both_sets_side_by_side_and_other_instances_are_refused(tmp_path):
    c = np.array([[0, 0], [5, 5]])
    a = _store(tmp_path / "a", "enc", 3, {"f1": (np.ones((2, 3)), c)})
    b = _store(tmp_path / "b", "morphometrics", 2, {"f1": (np.full((2, 2), 7.0), c)})
    out = combine_stores(a, b, tmp_path / "ab")
    (row,) = load_store(out)
    f, coords, attrs = read_item(row["h5"])
    assert f.tolist() == [[1, 1, 1, 7, 7]] * 2 and coords.tolist() == c.tolist()
    assert attrs["encoder"] == "enc+morphometrics" and attrs["embed_dim"] == 5
    other = _store(tmp_path / "o", "morphometrics", 2, {"f1": (np.zeros((3, 2)), np.zeros((3, 2)))})
    with pytest.raises(DerivedStoreError, match="other instances"):
        combine_stores(a, other, tmp_path / "ao")


def test_matching_keeps_every_close_pair():
    """Point A is 1 px from cell 0, point B 50 px from cell 0 and 300 from cell 1: a raw-distance
    assignment would give A up (to shorten B's pair); within a 10 px tolerance A keeps cell 0, B none."""
    cells = np.array([[0.0, 0.0], [300.0, 50.0], [61.0, 0.0]])
    points = np.array([[1.0, 0.0], [50.0, 0.0]])
    assert match_points(cells, points, 10.0) == [(0, 0)]
    assert match_points(cells, points, 12.0) == [(0, 0), (2, 1)]


def test_detected_cells_matched_to_points_become_labelled_items_and_misses_are_counted(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from cytofm.cli.main import app

    cells = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]
    (tmp_path / "in").mkdir()
    Image.fromarray(smear(240, 320, cells, seed=1)[0]).save(tmp_path / "in" / "field.png")
    runner = CliRunner()
    for args in (["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "prep"), "--preset", "smear_cells",
                  "--cells", "resolution.mpp=0.25", "cells.typical_diameter_um=8", "cells.min_diameter_um=3",
                  "cells.max_diameter_um=20"],
                 ["extract", "--input", str(tmp_path / "prep"), "--mode", "cells", "--encoder",
                  "morphometrics", "--out", str(tmp_path / "store")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    points = [("in/field.png", 41, 39, "a"), ("in/field.png", 199, 61, "b"), ("in/field.png", 61, 190, "a"),
              ("in/field.png", 300, 20, "b")]  # the last one on glass: no cell there
    with open(tmp_path / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "type"])
        w.writerows(points)
    n = cells_as_items(tmp_path / "store", tmp_path / "prep", tmp_path / "points.csv", "type",
                       tmp_path / "items")
    assert (n["labelled"], n["matched"], n["items"]) == (4, 3, 3)
    rows = load_store(tmp_path / "items")
    assert sorted(r["type"] for r in rows) == ["a", "a", "b"] and {r["field"] for r in rows} == {"field"}
    assert all(r["source_image"].endswith("field.png") for r in rows)
    f, _, _ = read_item(rows[0]["h5"])
    assert f.shape == (1, 8)
