"""The review page works in a real headless Chromium (Debian's chromium and chromedriver, driven by selenium):
the worklist sorts and filters, hostile names stay text, keys judge cells and "s" downloads the corrections
CSV, and the screen is laid out as the page's stylesheet says. Skips where one of the three is missing.

The driver and ``review_in_browser`` (keys in, CSV out) live in tests/helpers.py for other modules'
browser tests."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytofm.viz.review_page import write_review_page

from tests.helpers import (
    browser_missing,
    case_order,
    chromium_driver,
    open_case,
    open_page,
    review_in_browser,
)

CLASSES = ["normal", "schistocyte"]
EVIL = "</script><script>alert(1)</script>"
B = 'slide "B", left'
A_COLOURS = [(200, 40, 200), (40, 170, 170), (220, 200, 40)]  # solid crops, found again on the screenshot
pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


def crop(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


def _cell(i, x, y, cls, colour):
    return {"id": f"cell{i}", "x": x, "y": y, "z": 2, "cls": cls, "p": 0.8 + i / 100, "abnormality": 0.5,
            "focus": 0.9, "seg_confidence": 0.7, "crop": crop(colour)}


def planted_page(path: Path) -> Path:
    """Three cases: slide-A (rank 1, review, 3 cells), 'slide "B", left' (rank 2, 2 cells) and a could-not-
    analyse case with a script for a name; classes normal, schistocyte."""
    a = [_cell(0, 10.5, 20.25, "normal", A_COLOURS[0]), _cell(1, 30.75, 40.5, "normal", A_COLOURS[1]),
         _cell(2, 50.5, 60.125, "schistocyte", A_COLOURS[2])]
    b = [_cell(0, 7.0, 8.5, "schistocyte", (90, 90, 90)),
         _cell(1, 11.25, 12.5, "normal", (150, 150, 150)) | {"focus": None}]  # unknown: triage's None
    worklist = [
        {"case": "slide-A", "rank": 1, "score": 0.9, "spread": 0.05, "quintile": 5, "decision": "review",
         "qc_rescreen": True, "adequacy": "satisfactory", "reason": "", "n_cells": 3},
        {"case": B, "rank": 2, "score": 0.4, "spread": 0.1, "quintile": 3, "decision": "no further review",
         "qc_rescreen": False, "adequacy": "limited", "reason": "few cells", "n_cells": 2},
        {"case": EVIL, "rank": "", "score": "", "spread": "", "quintile": "", "decision": "could not analyse",
         "qc_rescreen": False, "adequacy": "", "reason": "out of focus", "n_cells": 0}]
    galleries = {"top": [2, 0], "normal": [0, 1], "schistocyte": [2], "unidentified": []}
    cases = {"slide-A": {"image": "/data/run 1/A.tif", "cells": a, "galleries": galleries},
             B: {"image": "/data/B, second.tif", "cells": b,
                 "galleries": {"top": [0], "schistocyte": [0], "normal": [1]}}}
    return write_review_page(path, worklist, cases, CLASSES, title="triage <b>x</b>",
                             notes=["counts from a detector are estimates"])


@pytest.fixture
def driver(tmp_path):
    d = chromium_driver(tmp_path / "downloads", tmp_path / "profile")
    yield d
    d.quit()


def _no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018


def test_worklist_sorts_filters_and_shows_names_as_text(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(driver, planted_page(tmp_path / "review.html"))
    assert driver.title == "triage <b>x</b>"
    assert case_order(driver) == ["slide-A", B, EVIL]
    assert [td.text for td in driver.find_elements(By.CSS_SELECTOR, "td.case") if td.text == EVIL] == [EVIL]
    _no_alert(driver)
    rank = driver.find_element(By.CSS_SELECTOR, 'th[data-key="rank"]')
    rank.click()  # the worklist opens sorted by rank, ascending: one click reverses it; blanks stay last
    assert case_order(driver) == [B, "slide-A", EVIL] and rank.get_attribute("aria-sort") == "descending"
    score = driver.find_element(By.CSS_SELECTOR, 'th[data-key="score"]')
    score.click()
    assert case_order(driver) == [B, "slide-A", EVIL] and rank.get_attribute("aria-sort") == "none"
    score.click()
    assert case_order(driver) == ["slide-A", B, EVIL] and score.get_attribute("aria-sort") == "descending"
    select = Select(driver.find_element(By.ID, "filter"))
    for value, shown in (("review", ["slide-A"]), ("no further review", [B]), ("could not analyse", [EVIL]),
                         ("all", ["slide-A", B, EVIL])):
        select.select_by_value(value)
        assert case_order(driver, visible_only=True) == shown


def test_keys_move_judge_and_mark_reviewed(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(driver, planted_page(tmp_path / "review.html"))
    open_case(driver, "slide-A")
    active = driver.switch_to.active_element  # the first tile: the top gallery's cell 2, then 0; normal: 0, 1
    assert driver.find_element(By.CSS_SELECTOR, "#panel h2").text == "slide-A"
    assert [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#panel h3")] == [
        "Most abnormal cells (2)", "normal (2)", "schistocyte (1)", "Unidentified (0)"]
    assert active.get_attribute("data-cell") == "2" and "sel" in active.get_attribute("class")
    for key, cell in ((Keys.ARROW_RIGHT, "0"), ("k", "2"), ("j", "0"), ("j", "0"), ("j", "1")):
        driver.switch_to.active_element.send_keys(key)
        assert driver.switch_to.active_element.get_attribute("data-cell") == cell
    driver.switch_to.active_element.send_keys(Keys.ARROW_LEFT)  # back to cell 0, in the normal gallery
    driver.switch_to.active_element.send_keys("2")  # reclassified; both of its tiles say so; on to cell 1
    zero = driver.find_elements(By.CSS_SELECTOR, '#panel .tile[data-cell="0"]')
    assert [("reclassified" in t.get_attribute("class"), t.find_element(By.CSS_SELECTOR, ".v").text)
            for t in zero] == [(True, "\u2192 schistocyte")] * 2
    assert driver.switch_to.active_element.get_attribute("data-cell") == "1"
    driver.switch_to.active_element.send_keys("c")
    one = driver.find_element(By.CSS_SELECTOR, '#panel .tile[data-cell="1"]')
    assert "confirmed" in one.get_attribute("class") and one.find_element(By.CSS_SELECTOR, ".v").text == (
        "\u2713 normal")
    driver.switch_to.active_element.send_keys("r")
    assert driver.find_element(By.CSS_SELECTOR, "#wl-body tr.open td.reviewed").text == "\u2713"
    assert driver.find_element(By.ID, "status").text == "2 cells judged \u00b7 1/3 cases reviewed"
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)  # back to the worklist: down twice, Enter
    for key in (Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ENTER):
        driver.switch_to.active_element.send_keys(key)
    assert driver.find_element(By.CSS_SELECTOR, "#panel h2").text == EVIL
    assert "No cells to review." in driver.find_element(By.ID, "panel").text
    _no_alert(driver)
    open_case(driver, B)
    tiles = driver.find_elements(By.CSS_SELECTOR, '#panel .tile[data-cell="1"]')
    assert [t.text.splitlines() for t in tiles] == [["normal 0.81", "focus n/a \u00b7 seg 0.70"]]


def test_review_downloads_the_corrections_csv(tmp_path):
    from selenium.webdriver.common.keys import Keys

    html = planted_page(tmp_path / "review.html")
    path = review_in_browser(html, tmp_path / "downloads", [
        ("slide-A", 0, "2"), ("slide-A", 1, Keys.ENTER), (B, 1, "2"), (B, 0, "c")])
    text = path.read_bytes().decode()  # as written: CRLF line ends (RFC 4180)
    assert sorted(p.name for p in path.parent.iterdir()) == ["corrections.csv"]
    assert text.splitlines()[0] == "image,x,y,label,verdict,case,predicted,classes"
    assert text.splitlines()[3] == '"/data/B, second.tif",7,8.5,schistocyte,confirmed,"slide ""B"", left",' \
                                   "schistocyte,normal|schistocyte"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    a, b, k = "/data/run 1/A.tif", "/data/B, second.tif", "normal|schistocyte"
    assert rows[1:] == [[a, "10.5", "20.25", "schistocyte", "reclassified", "slide-A", "normal", k],
                        [a, "30.75", "40.5", "normal", "confirmed", "slide-A", "normal", k],
                        [b, "7", "8.5", "schistocyte", "confirmed", B, "schistocyte", k],
                        [b, "11.25", "12.5", "schistocyte", "reclassified", B, "normal", k]]
    assert text.endswith("\r\n") and text.count("\r\n") == 5


def _colour(rgb, c):
    return np.all(rgb == np.array(c), axis=-1)


def test_layout_as_the_stylesheet_says(driver, tmp_path):
    open_page(driver, planted_page(tmp_path / "review.html"))
    open_case(driver, "slide-A")
    driver.execute_script("return Promise.all([...document.images].map((i) => i.decode()))")
    driver.save_screenshot(str(tmp_path / "shot.png"))
    rgb = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    assert rgb.shape == (800, 1280, 3)
    header = _colour(rgb, (0x1F, 0x3A, 0x5F))
    assert header[:4].all() and header[40:44].all() and header[:44, :12].all()  # the bar's padding
    assert header[:44].mean() > 0.9 and not header[44:].any()  # a 44 px bar, nothing of its colour below
    notes = np.nonzero(_colour(rgb, (0xFF, 0xF8, 0xE1)).all(axis=1))[0]  # the notes' padding rows, full width
    assert notes.min() == 44
    rule = np.nonzero(_colour(rgb, (0xE0, 0xD6, 0xB0)).all(axis=1))[0]
    [top] = rule + 1  # main starts under the notes' bottom border
    assert _colour(rgb[top:, 780], (0x9A, 0xA5, 0xB1)).all()  # the worklist pane: 780 px and its border
    th = np.nonzero(_colour(rgb[top:, :780], (0xE3, 0xE8, 0xEF)).all(axis=1))[0]
    assert len(th) >= 6 and th.min() < 60  # the table's head row spans the pane, near its top
    assert not _colour(rgb[top + th, 781:], (0xE3, 0xE8, 0xEF)).any()
    assert _colour(rgb[top:top + 12, 781:], (0xF4, 0xF6, 0xF8)).all()  # the case panel's padding
    # the crops, 96 px squares in 110 px tiles 8 px apart, the first column's at 781 + 16 (panel padding) + 3
    # (border) + 4 (padding) = 804: cell 0 in the top gallery's second column and the normal gallery's first,
    # cell 1 in the normal gallery's second, cell 2 in the first column of the top and schistocyte galleries
    for colour, n, left, right in zip(A_COLOURS, (2, 1, 2), (804, 922, 804), (1017, 1017, 899), strict=True):
        ys, xs = np.nonzero(np.abs(rgb - np.array(colour)).max(axis=-1) <= 6)
        assert (len(xs), xs.min(), xs.max()) == (n * 96 * 96, left, right)
