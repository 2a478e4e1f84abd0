"""``cytofm triage`` on planted fields whose risk order is known: six cells each, 0 to 6 of them large (the
abnormal class), and a blank field; the worklist's order, quintiles, decisions and QC draw as worked out by
hand, the blank field listed as could not analyse, the galleries, the QuPath objects and the review page."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app

from tests.helpers import (
    PLANTED_SIZES,
    browser_missing,
    planted_fields,
    qupath_geojson_problems,
    review_in_browser,
    smear,
)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cell_model(tmp_path_factory):
    """A linear probe telling large cells from small ones, on the morphometrics of planted fields."""
    tmp = tmp_path_factory.mktemp("triage_model")
    points = planted_fields(tmp / "train", [1, 2, 3, 4, 5, 3], 0)
    with open(tmp / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "kind"])
        w.writerows(points)
    runner = CliRunner()
    for args in (["prepare", str(tmp / "train"), "--out", str(tmp / "prep"), "--preset", "smear_cells",
                  "--cells", *PLANTED_SIZES],
                 ["extract", "--input", str(tmp / "prep"), "--mode", "cells", "--encoder", "morphometrics",
                  "--out", str(tmp / "store")],
                 ["probe", "--features", str(tmp / "store"), "--label", "kind", "--cell-points",
                  str(tmp / "points.csv"), "--out", str(tmp / "probe"), "--folds", "2", "--seeds", "0,1",
                  "--methods", "linear"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    return tmp / "probe"


def test_triage_ranks_decides_draws_and_lists_what_it_could_not_analyse(cell_model, tmp_path):
    planted_fields(tmp_path / "new", [0, 2, 6, 4, 1], 1)  # fields 1_0 .. 1_4 with 0, 2, 6, 4, 1 large cells
    Image.fromarray(smear(180, 240, [], seed=7)[0]).save(tmp_path / "new" / "blank.png")
    (tmp_path / "new" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "triage"
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "new"),
                                 "--out", str(out), "--abnormal", "large", "--threshold", "0.3", "--qc-share",
                                 "0.5", "--seed", "7", "--top-k", "4", "adequacy.min_cells=3",
                                 "adequacy.limited_cells=5"])
    assert r.exit_code == 0, r.output
    rows = _rows(out / "worklist.csv")
    # burden: the mean P(large), 0.17 + 0.65 x the share of large cells 6/6, 4/6, 2/6, 1/6, 0/6 (the probe is
    # soft: 0.83 on a large cell); 0.3 falls between 2/6 (0.39) and 1/6 (0.28). The blank field last
    assert [x["case"] for x in rows] == ["1_2", "1_3", "1_1", "1_4", "1_0", "blank", "broken"]
    assert [x["rank"] for x in rows] == ["1", "2", "3", "4", "5", "", ""]
    assert [x["quintile"] for x in rows] == ["5", "4", "3", "2", "1", "", ""]  # five cases: one per quintile
    assert [x["decision"] for x in rows] == (["review"] * 3 + ["no further review"] * 2
                                             + ["could not analyse"] * 2)
    assert rows[-1]["reason"].startswith("unreadable: ")
    # the no-further-review cases sorted [1_0, 1_4]; ceil(0.5 * 2) = 1; default_rng(7).choice(2, 1) = [1]
    assert [x["case"] for x in rows if x["qc_rescreen"] == "True"] == ["1_4"]
    assert rows[-2]["reason"].startswith("no cells found") and rows[-2]["score"] == ""
    assert [x["n_large"] for x in rows[:5]] == ["6", "4", "2", "1", "0"]
    assert [x["adequacy"] for x in rows[:5]] == ["satisfactory"] * 5  # 6 cells >= limited_cells 5
    assert "2 could not be analysed" in r.output and "could not analyse blank: no cells found" in r.output
    # galleries: the top four of field 1_3 are its four large cells
    gal = [g for g in _rows(out / "gallery.csv") if g["case"] == "1_3"]
    assert [g["cls"] for g in gal if g["gallery"] == "top"] == ["large"] * 4
    assert {g["gallery"] for g in gal} == {"top", "large", "small"}
    diff = {d["case"]: (d["n_large"], d["n_small"], d["n_unidentified"])
            for d in _rows(out / "differential.csv")}
    assert diff["1_1"] == ("2", "4", "0")
    qp = out / "geojson" / "1_3.gallery.geojson"
    assert qupath_geojson_problems(qp) == []
    objects = json.loads(qp.read_text())["features"]
    assert sorted(o["properties"]["classification"]["name"] for o in objects) == ["large"] * 4 + ["small"] * 2
    page = (out / "review.html").read_text()
    assert "1_3" in page and "http://" not in page and "https://" not in page
    rec = json.loads((out / "triage.json").read_text())
    assert rec["abnormal"] == ["large"] and rec["threshold"] == 0.3
    assert not (tmp_path / "new" / "worklist.csv").exists()  # nothing written into the input


def test_labelled_cases_choose_the_operating_point_out_of_fold(cell_model, tmp_path):
    large = [0, 4, 4, 4, 0, 4, 1, 0]  # positives alike (4 large cells), so every fold's threshold is theirs
    planted_fields(tmp_path / "new", large, 2)
    with open(tmp_path / "cases.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "abnormal"])
        w.writerows([(f"new/2_{k}.png", "yes" if n >= 3 else "no") for k, n in enumerate(large)])
    out = tmp_path / "triage"
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "cases.csv"),
                                 "--out", str(out), "--label", "abnormal", "--abnormal", "large", "folds=2",
                                 "adequacy.min_cells=3"])
    assert r.exit_code == 0, r.output
    op = json.loads((out / "operating_point.json").read_text())
    assert (op["n_positive"], op["n_negative"], op["sensitivity"], op["specificity"]) == (4, 4, 1.0, 1.0)
    assert op["no_further_review_share"] == 0.5
    rows = _rows(out / "worklist.csv")
    lowest = min(float(x["score"]) for x in rows if x["label"] == "yes")
    assert op["threshold"] == pytest.approx(lowest, abs=1e-6)
    cleared = {x["case"] for x in rows if x["decision"] == "no further review"}
    assert cleared == {f"new__2_{k}" for k in (0, 4, 6, 7)}
    # a slide model over the counts, trained and cross-validated by `probe` itself, then applied by triage
    counts = out / "slides" / "counts"
    assert len(_rows(counts / "manifest.csv")) == 8
    assert (out / "slides" / "top_cells" / "store.json").is_file()
    r = CliRunner().invoke(app, ["probe", "--features", str(counts), "--label", "abnormal", "--folds", "2",
                                 "--seeds", "0", "--methods", "linear", "--out", str(tmp_path / "slide"),
                                 "--no-group-duplicates"])  # planted fields look alike
    assert r.exit_code == 0, r.output
    op = json.loads((tmp_path / "slide" / "model.json").read_text())["operating_point"]
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "cases.csv"),
                                 "--out", str(tmp_path / "again"), "--abnormal", "large", "--slide-model",
                                 str(tmp_path / "slide"), "adequacy.min_cells=3"])
    assert r.exit_code == 0, r.output
    p = {x["id"]: float(x["p_yes"]) for x in _rows(tmp_path / "again" / "slide_model" / "predictions.csv")}
    rows = _rows(tmp_path / "again" / "worklist.csv")
    assert {x["case"]: float(x["score"]) for x in rows} == pytest.approx(p, abs=1e-5)
    assert all((x["decision"] == "review") == (float(x["score"]) >= op["threshold"]) for x in rows)
    assert json.loads((tmp_path / "again" / "triage.json").read_text())["threshold"] == op["threshold"]
    # a model of whole cases (the slide probe) is no cell classifier: refused with the fix
    r = CliRunner().invoke(app, ["triage", "--model", str(tmp_path / "slide"), "--input",
                                 str(tmp_path / "cases.csv"), "--out", str(tmp_path / "refused")])
    assert r.exit_code != 0 and "galleries need a cell classifier" in r.output
    assert "probe --cell-points" in r.output and not (tmp_path / "refused" / "worklist.csv").exists()


def test_a_model_of_whole_fields_is_refused_for_galleries_with_the_fix(tmp_path):
    from cytofm.eval.saved_model import SavedModel
    from cytofm.pipeline.triage import TriageError, check_cell_model

    class _Fields:
        reads_cells, kind = False, "mil"

    with pytest.raises(TriageError, match="needs? a cell classifier|need a cell classifier"):
        check_cell_model(_Fields(), tmp_path)
    assert SavedModel  # the real reader is exercised above


def _corrections(path, rows, classes="large|small"):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "label", "verdict", "case", "predicted", "classes"])
        w.writerows([(*r, classes) for r in rows])


def test_a_review_round_becomes_training_labels_and_bad_rows_are_refused(cell_model, tmp_path):
    cells = planted_fields(tmp_path / "new", [1, 5, 2, 4], 3)
    out = tmp_path / "triage"
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "new"),
                                 "--out", str(out), "--abnormal", "large", "adequacy.min_cells=3"])
    assert r.exit_code == 0, r.output
    gallery = [g for g in _rows(out / "gallery.csv") if g["gallery"] == "top"]
    images = {x["case"]: x["image"] for x in _rows(out / "worklist.csv")}
    truth = {(f"{Path(i).stem}", x, y): k for i, x, y, k in cells}
    rows = []
    for g in gallery:  # the reviewer gives each gallery cell its planted class
        true = min(((c, k) for c, k in truth.items() if c[0] == g["case"]),
                   key=lambda ck: (ck[0][1] - float(g["x"])) ** 2 + (ck[0][2] - float(g["y"])) ** 2)[1]
        verdict = "confirmed" if true == g["cls"] else "reclassified"
        rows.append((images[g["case"]], g["x"], g["y"], true, verdict, g["case"], g["cls"]))
    _corrections(tmp_path / "corrections.csv", rows)
    probe = ["probe", "--features", str(out / "features"), "--label", "label", "--folds", "2", "--seeds", "0",
             "--methods", "linear"]
    r = CliRunner().invoke(app, [*probe, "--cell-points", str(tmp_path / "corrections.csv"), "--out",
                                 str(tmp_path / "probe")])
    assert r.exit_code == 0, r.output
    assert f"{len(rows)} of {len(rows)} labelled cells matched" in r.output
    assert json.loads((tmp_path / "probe" / "model.json").read_text())["classes"] == ["large", "small"]
    bad = [rows[0][:3] + ("huge",) + rows[0][4:], rows[1], (rows[2][0], 2, 2) + rows[2][3:]]
    _corrections(tmp_path / "bad.csv", bad)
    r = CliRunner().invoke(app, [*probe, "--cell-points", str(tmp_path / "bad.csv"), "--out",
                                 str(tmp_path / "b")])
    assert r.exit_code != 0 and "line 2: unknown class 'huge' (the model's: large, small)" in r.output
    _corrections(tmp_path / "bad.csv", bad[1:])
    r = CliRunner().invoke(app, [*probe, "--cell-points", str(tmp_path / "bad.csv"), "--out",
                                 str(tmp_path / "c")])
    assert r.exit_code != 0 and "1 corrected cell(s) are not cells of the store's cases: line 3" in r.output


def test_a_review_in_chromium_saves_corrections_that_probe_reads(cell_model, tmp_path):
    """The whole round: triage, review.html in a real headless Chromium, two cells reclassified by number keys
    and the rest confirmed with "c", "s" saves, and `probe --cell-points` trains on the saved file."""
    if browser_missing():
        pytest.skip(browser_missing())
    planted_fields(tmp_path / "new", [1, 5, 2, 4], 3)
    out = tmp_path / "triage"
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "new"),
                                 "--out", str(out), "--abnormal", "large", "adequacy.min_cells=3"])
    assert r.exit_code == 0, r.output
    keys = [(case, k, "c") for case in ("3_0", "3_1", "3_2", "3_3") for k in range(6)]
    keys[0], keys[7] = ("3_0", 0, "2"), ("3_1", 1, "1")  # 2: small, 1: large (the model's classes in order)
    saved = review_in_browser(out / "review.html", tmp_path / "downloads", keys)
    rows = _rows(saved)
    assert len(rows) == 24 and {x["classes"] for x in rows} == {"large|small"}
    by_case = {}
    for x in rows:
        by_case.setdefault(x["case"], []).append(x)
    first, second = by_case["3_0"][0], by_case["3_1"][1]
    assert (first["label"], second["label"]) == ("small", "large")
    assert first["verdict"] == ("confirmed" if first["predicted"] == "small" else "reclassified")
    same = sum(x["predicted"] == x["label"] for x in (first, second))
    assert sum(x["verdict"] == "confirmed" for x in rows) == 22 + same  # "c" confirms; a number key may too
    r = CliRunner().invoke(app, ["probe", "--features", str(out / "features"), "--label", "label",
                                 "--cell-points", str(saved), "--out", str(tmp_path / "probe"),
                                 "--folds", "2", "--seeds", "0", "--methods", "linear"])
    assert r.exit_code == 0, r.output
    assert "24 of 24 labelled cells matched" in r.output
    labels = {x["label"] for x in _rows(tmp_path / "probe" / "cells" / "manifest.csv")}
    assert labels == {"large", "small"}


def test_a_first_pass_hands_only_each_cases_most_abnormal_cells_to_the_model(cell_model, tmp_path):
    planted_fields(tmp_path / "new", [0, 2, 6, 4, 1], 1)
    out = tmp_path / "triage"
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "new"),
                                 "--out", str(out), "--abnormal", "large", "--first-pass", str(cell_model),
                                 "--candidates", "3", "--score", "top", "adequacy.min_cells=3"])
    assert r.exit_code == 0, r.output
    assert "30 cells classified, the 15 most abnormal (at most 3 per case) go to the foundation" in r.output
    cells = _rows(out / "predictions.csv")
    per = {f: sum(c["field"] == f for c in cells) for f in {c["field"] for c in cells}}
    assert per == {f"1_{k}": 3 for k in range(5)}
    # the candidates of 1_1 (2 large cells) are its two large cells and one small one
    assert sorted(c["pred"] for c in cells if c["field"] == "1_1") == ["large", "large", "small"]
    rows = _rows(out / "worklist.csv")
    assert [x["case"] for x in rows[:3]] == ["1_2", "1_3", "1_1"]  # top 3: three large cells in 1_2 and 1_3
    assert {x["n_cells"] for x in rows} == {"6"}  # adequacy counts every detected cell, not the candidates
    import shutil

    other = tmp_path / "other_probe"
    shutil.copytree(cell_model, other)
    rec = json.loads((other / "model.json").read_text())
    rec["features"]["prepare"]["cells"]["typical_diameter_um"] = 9
    (other / "model.json").write_text(json.dumps(rec))
    r = CliRunner().invoke(app, ["triage", "--model", str(cell_model), "--input", str(tmp_path / "new"),
                                 "--out", str(tmp_path / "t2"), "--abnormal", "large", "--first-pass",
                                 str(other)])
    assert r.exit_code != 0 and "(cells.typical_diameter_um: 9 there, 6.0 in the model)" in r.output
