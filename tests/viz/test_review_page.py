"""The review page carries its data intact as JSON, shows hostile names only escaped, loads nothing from
the network and is replaced in one step (no browser here: tests/viz/test_review_browser.py runs it)."""

import base64
import hashlib
import json
import math
import os
import re

import pytest

from cytofm.viz.review_page import CSV_COLUMNS, SCRIPT, STYLE, page_data, write_review_page

EVIL_CASE = "</script><script>alert(1)</script>"
EVIL_CLASS = "<img src=x onerror=alert(1)>"
CROP = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()


def _cell(i, cls="normal"):
    return {"id": f"c{i}", "x": 10.5 + i, "y": 20.25, "z": i, "cls": cls, "p": 0.75, "abnormality": 0.5,
            "focus": 0.9, "seg_confidence": 0.8, "crop": CROP}


def _inputs():
    worklist = [
        {"case": "A", "rank": 1, "score": 0.875, "spread": 0.125, "quintile": 5, "decision": "review",
         "qc_rescreen": True, "adequacy": "satisfactory", "reason": "", "n_cells": 2, "extra": "ignored"},
        {"case": EVIL_CASE, "rank": 2, "score": float("nan"), "spread": "", "quintile": "",
         "decision": "no further review", "qc_rescreen": False, "adequacy": "limited",
         "reason": "few cells \u2028 & <b>", "n_cells": 1},
        {"case": "C", "rank": "", "score": "", "spread": "", "quintile": "", "decision": "could not analyse",
         "qc_rescreen": False, "adequacy": "", "reason": "no focus", "n_cells": 0},
    ]
    cases = {"A": {"image": "/data/A, 1.tif", "cells": [_cell(0), _cell(1, EVIL_CLASS)],
                   "galleries": {"top": [1, 0], "normal": [0], EVIL_CLASS: [1], "unidentified": []}},
             EVIL_CASE: {"image": "/data/</script>.tif", "cells": [_cell(0)], "galleries": {"top": [0]}},
             "not in the worklist": {"image": "/x", "cells": [], "galleries": {}}}
    return worklist, cases, ["normal", EVIL_CLASS]


def _write(tmp_path, **kw):
    worklist, cases, classes = _inputs()
    kw = {"title": "triage <b>run</b>", "notes": ["thresholds are the lab's to validate", "<i>n</i>"]} | kw
    path = write_review_page(tmp_path / "out" / "review.html", worklist, cases, classes, **kw)
    return path.read_text(encoding="utf-8")


def _data(text):
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)[1])


def test_data_round_trips(tmp_path):
    data = _data(_write(tmp_path))
    assert data == page_data(*_inputs(), title="triage <b>run</b>",
                             notes=["thresholds are the lab's to validate", "<i>n</i>"])
    assert data["classes"] == ["normal", EVIL_CLASS]
    assert [r["case"] for r in data["worklist"]] == ["A", EVIL_CASE, "C"]
    assert data["worklist"][0] == {"case": "A", "rank": 1, "score": 0.875, "spread": 0.125, "quintile": 5,
                                   "decision": "review", "qc_rescreen": True, "adequacy": "satisfactory",
                                   "reason": "", "n_cells": 2}  # the extra key dropped
    assert data["worklist"][1]["score"] == "" and data["worklist"][1]["reason"] == "few cells \u2028 & <b>"
    assert data["worklist"][2]["rank"] == ""
    # cases aligned with the worklist, by position; a case without an entry is null
    assert data["cases"][0]["image"] == "/data/A, 1.tif" and data["cases"][2] is None
    assert data["cases"][0]["cells"][1] == _cell(1, EVIL_CLASS)
    galleries = {"top": [1, 0], "normal": [0], EVIL_CLASS: [1], "unidentified": []}
    assert data["cases"][0]["galleries"] == galleries
    assert data["cases"][1]["image"] == "/data/</script>.tif"


def test_hostile_names_only_escaped(tmp_path):
    text = _write(tmp_path)
    for raw in (EVIL_CASE, EVIL_CLASS, "<b>run</b>", "<i>n</i>", "</script>.tif", "\u2028", "& <b>"):
        assert raw not in text
    # the page's own two script blocks, nothing else opens or closes one
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<title>triage &lt;b&gt;run&lt;/b&gt;</title>" in text
    block = re.search(r'id="data">(.*?)</script>', text, re.S)[1]
    assert not set("<>&\u2028\u2029") & set(block)
    assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in block
    # the page builds its DOM from the data with textContent and setAttribute, never parses it as markup
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in SCRIPT


def test_self_contained_and_own_code_allowed(tmp_path):
    text = _write(tmp_path)
    assert re.search(r"https?:|//[a-z]", text, re.I) is None
    assert "<link" not in text and "url(" not in text and "@import" not in text
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)[1]
    script = re.search(r"<script>(.*?)</script>", text, re.S)[1]
    style = re.search(r"<style>(.*?)</style>", text, re.S)[1]
    assert (script, style) == (SCRIPT, STYLE)
    for block, directive in ((script, "script-src"), (style, "style-src")):
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "img-src data:" in csp
    # the CSV the page writes has the documented columns, in order
    assert "[" + ", ".join(f'"{c}"' for c in CSV_COLUMNS) + "]" in SCRIPT
    assert CSV_COLUMNS == ("image", "x", "y", "label", "verdict", "case", "predicted", "classes")


def test_written_through_a_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "out" / "review.html"
    calls, real = [], os.replace

    def spy(src, dst):
        calls.append((src, dst, open(src, encoding="utf-8").read()))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    text = _write(tmp_path)
    [(src, dst, written)] = calls
    assert dst == path and os.path.dirname(src) == str(path.parent) and written == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["review.html"]

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path, title="second")
    assert path.read_text(encoding="utf-8") == text  # the old page untouched, no temporary file left
    assert sorted(p.name for p in path.parent.iterdir()) == ["review.html"]


def test_gallery_index_beyond_the_cells_is_refused(tmp_path):
    worklist, cases, classes = _inputs()
    cases["A"]["galleries"]["top"] = [0, 2]
    with pytest.raises(ValueError, match="case 'A', gallery 'top' names a cell beyond its 2 cells"):
        write_review_page(tmp_path / "r.html", worklist, cases, classes)
    assert not (tmp_path / "r.html").exists()


def test_unknown_cell_measures_become_null():
    """Triage passes an unknown focus or segmentation confidence as None (JSON has no NaN)."""
    cell = _cell(0) | {"focus": None, "seg_confidence": float("nan"), "abnormality": "", "z": None}
    cases = {"A": {"image": "/a", "cells": [cell], "galleries": {"top": [0]}}}
    [case] = page_data([{"case": "A", "decision": "review"}], cases, ["normal"])["cases"]
    unknown = {"focus": None, "seg_confidence": None, "abnormality": None, "z": None}
    assert case["cells"][0] == _cell(0) | unknown


def test_non_finite_numbers_become_blanks():
    row = page_data([{"case": "x", "rank": None, "score": math.inf, "spread": float("nan"), "quintile": 3.0,
                      "decision": "review", "qc_rescreen": 0, "n_cells": 4}], {}, ["a"])["worklist"][0]
    assert row == {"case": "x", "rank": "", "score": "", "spread": "", "quintile": 3, "decision": "review",
                   "qc_rescreen": False, "adequacy": "", "reason": "", "n_cells": 4}
