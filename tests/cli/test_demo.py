"""The demo end to end (slow tier: ~8 min on 2 cores) and a screenshot of its report in headless Chromium."""

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import chromium_screenshot

pytestmark = pytest.mark.slow


def test_demo_end_to_end_and_report_screenshot(tmp_path):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    # the interpreter that runs the tests: `make test-slow` does not put the venv's cytofm on PATH
    cytofm = [sys.executable, "-m", "cytofm"]
    r = subprocess.run([*cytofm, "demo", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "benchmark" / "results.csv")))
    encoders = {row["encoder"] for row in rows}
    assert len(encoders) == 3 and "cytofm" in encoders
    assert any(row.get("attn_mass") for row in rows)  # ABMIL attention scored against the WBC boxes
    assert list((out / "heatmaps" / "vit_attention_cytofm").glob("*_attention.png"))
    assert list((out / "umap").glob("umap_*.png"))
    report = out / "report.html"
    assert report.is_file() and report.stat().st_size > 100_000
    assert wall < 12 * 60, f"demo took {wall:.0f} s"
    # a second run reuses every stage
    t1 = time.perf_counter()
    r = subprocess.run([*cytofm, "demo", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0 and time.perf_counter() - t1 < wall / 2
    img = chromium_screenshot(report, tmp_path / "demo_report.png")
    assert img.std() > 10  # not a blank page
    shutil.copy(tmp_path / "demo_report.png", Path(tempfile.gettempdir()) / "cytofm_demo_report.png")  # to look at
