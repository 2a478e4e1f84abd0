"""Detected cells become labelled items through one checked function, for ``cytofm probe --cell-points``
and for a benchmark cell task with ``points`` alike: the same items, counts, message and refusals."""

from __future__ import annotations

import csv
import json

import pytest

from cytofm.eval.cell_labels import CellPointsError, label_detected_cells
from cytofm.eval.config import TaskConfig
from cytofm.features.store import claim_store
from cytofm.pipeline.benchmark import _cell_items

from tests.helpers import smear

IDENT = {"encoder": "x", "weights_hash": "x", "embed_dim": 2, "input_size": 0, "tta": False}


@pytest.fixture(scope="module")
def cells_store(tmp_path_factory):
    """A morphometrics store of the five detected cells of one field, and the prepared folder."""
    from PIL import Image
    from typer.testing import CliRunner

    from cytofm.cli.main import app

    root = tmp_path_factory.mktemp("cells")
    (root / "in").mkdir()
    cells = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]
    Image.fromarray(smear(240, 320, cells, seed=1)[0]).save(root / "in" / "field.png")
    for args in (["prepare", str(root / "in"), "--out", str(root / "prep"), "--preset", "smear_cells",
                  "--cells", "resolution.mpp=0.25", "cells.typical_diameter_um=8", "cells.min_diameter_um=3",
                  "cells.max_diameter_um=20"],
                 ["extract", "--input", str(root / "prep"), "--mode", "cells", "--encoder", "morphometrics",
                  "--out", str(root / "store")]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
    return root


def _table(path, rows, label="type"):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", label])
        w.writerows(rows)
    return path


def test_the_probe_and_the_benchmark_match_cells_alike_and_the_benchmark_is_checked(cells_store, tmp_path):
    root = cells_store
    points = _table(root / "points.csv", [("in/field.png", 41, 39, "a"), ("in/field.png", 199, 61, "b"),
                                         ("in/field.png", 61, 190, "a"), ("in/field.png", 300, 20, "b")])
    logs: list[str] = []
    n = label_detected_cells(root / "store", points, "type", tmp_path / "items", log=logs.append)
    assert (n["labelled"], n["matched"], n["items"]) == (4, 3, 3)
    assert json.loads((tmp_path / "items" / "matching.json").read_text()) == n
    assert logs[0] == (f"3 of 4 labelled cells matched a detected cell within {n['tolerance_px']:.1f} px "
                       "(1 unmatched, left out; matched per class: a 2/2, b 1/2; unmatched points listed in "
                       f"{tmp_path / 'items' / 'matching.json'})")
    assert len(logs) == 2 and logs[1].startswith("warning: class 'b' loses 1 of its 2 labelled cells (50%)")
    task = TaskConfig(name="t", data="d", label="type", mode="cells", points=str(points))
    blog: list[str] = []
    dst, spec, whash = _cell_items(task, (root / "store", "spec", "h"), root / "prep", tmp_path, blog.append)
    assert dst == root / "store_cells_matched" and (spec, whash) == ("spec", "h")
    assert json.loads((dst / "matching.json").read_text()) == n
    assert blog == [f"[t] {m}".replace(str(tmp_path / "items"), str(dst)) for m in logs]
    other = task.model_copy(update={"label": "kind"})
    with pytest.raises(CellPointsError, match=r"no column kind \(it needs image, x, y and kind\)"):
        _cell_items(other, (root / "store", "spec", "h"), root / "prep", tmp_path, blog.append)
    glass = _table(root / "glass.csv", [("in/field.png", 300, 20, "b")])  # on glass: no cell there
    with pytest.raises(CellPointsError, match="no labelled cell matched a detected cell of"):
        label_detected_cells(root / "store", glass, "type", tmp_path / "none", log=logs.append)


def test_unmatched_points_are_listed_with_their_class_and_a_class_losing_over_a_tenth_is_warned(
        cells_store, tmp_path):
    """The planted case: 'blast' loses one point of three on glass and one on an image the store lacks;
    'normal' keeps both of its points: the list names each lost point, the line counts per class, and
    only 'blast' is warned."""
    root = cells_store
    f = "in/field.png"
    points = _table(root / "planted.csv", [(f, 41, 39, "blast"), (f, 300, 20, "blast"), (f, 199, 61, "blast"),
                                          ("in/other.png", 7, 9, "blast"), (f, 251, 171, "normal"),
                                          (f, 61, 190, "normal")])
    logs: list[str] = []
    n = label_detected_cells(root / "store", points, "type", tmp_path / "items", log=logs.append)
    tol = f"{n['tolerance_px']:.1f}"
    saved = json.loads((tmp_path / "items" / "matching.json").read_text())
    assert saved["per_class"] == {"blast": {"labelled": 4, "matched": 2},
                                  "normal": {"labelled": 2, "matched": 2}}
    assert saved["unmatched"] == [
        {"image": "in/field.png", "x": 300.0, "y": 20.0, "label": "blast",
         "why": f"no detected cell within {tol} px"},
        {"image": "in/other.png", "x": 7.0, "y": 9.0, "label": "blast", "why": "image not in the store"}]
    assert "(2 unmatched, left out; matched per class: blast 2/4, normal 2/2;" in logs[0]
    assert logs[1:] == [f"warning: class 'blast' loses 2 of its 4 labelled cells (50%) to no match: the "
                        "evaluation leaves them out, and they may be the hard ones; see "
                        f"{tmp_path / 'items' / 'matching.json'}"]


def test_a_store_not_of_cells_without_its_cells_or_without_a_table_is_refused(tmp_path):
    claim_store(tmp_path / "tiles", {**IDENT, "mode": "tiles"})
    with pytest.raises(CellPointsError, match="needs a store extracted with --mode cells, not tiles"):
        label_detected_cells(tmp_path / "tiles", tmp_path / "p.csv", "kind", tmp_path / "o")
    claim_store(tmp_path / "cells", {**IDENT, "mode": "cells"})
    with pytest.raises(CellPointsError, match=r"prepared folder it was extracted from \(with its cells/\)"):
        label_detected_cells(tmp_path / "cells", tmp_path / "p.csv", "kind", tmp_path / "o")
    (tmp_path / "prep" / "cells").mkdir(parents=True)
    with pytest.raises(CellPointsError, match="p.csv: no such table of labelled cells"):
        label_detected_cells(tmp_path / "cells", tmp_path / "p.csv", "kind", tmp_path / "o",
                             prepared=tmp_path / "prep")
