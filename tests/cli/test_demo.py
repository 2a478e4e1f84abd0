"""The demo end to end (slow tier: ~8 min on 2 cores) and screenshots of its report in headless Chromium at
desktop and laptop widths."""

import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import assert_report_frame, chromium_screenshot

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
    assert encoders == {"cytofm", "random:vit_small_patch16_224", "handcrafted",
                        "cytofm:demo_fresh.safetensors"}
    # nothing an encoder was pretrained on is evaluated: the shipped and the fresh encoder saw 0% of the items
    assert {row["seen_in_pretraining"] for row in rows if row["encoder"].startswith("cytofm")} == {"0.0"}
    plan = json.loads((out / "plan.json").read_text())  # what the demo sized itself to on this machine
    cells = [row for row in rows if row["task"] == "chula_red_cell_type"]
    assert cells and all(abs(int(row["n_items"]) - plan["cells"]) <= 0.05 * plan["cells"] for row in cells)
    full = plan["cells"] == 763
    # enough cells for +-0.05 paired intervals
    assert not full or all(int(row["n_items"]) > 700 for row in cells)
    assert any(row.get("attn_mass") for row in rows)  # ABMIL attention scored against the WBC boxes
    # the first lines after the run: the result in words, the shipped encoder against random init
    after = r.stdout.split("## What the demo found", 1)[1].strip().splitlines()
    assert (after[0].startswith("- chula_red_cell_type (linear, ") and "cytofm" in after[0]
            and "random" in after[0])
    comps = list(csv.DictReader(open(out / "benchmark" / "comparisons.csv")))
    head = next(c for c in comps if c["task"] == "chula_red_cell_type" and c["method"] == "linear"
                and {c["a"], c["b"]} == {"cytofm", "random:vit_small_patch16_224"})
    assert not full or float(head["diff_ci_high"]) - float(head["diff_ci_low"]) < 0.2  # about +-0.05 to +-0.1
    assert list((out / "heatmaps" / "vit_attention_cytofm").glob("*_attention.png"))
    # train once, apply: the saved white-cell model predicts the 20 held-out fields, with heatmaps
    predicted = list(csv.DictReader(open(out / "predict" / "predictions.csv")))
    assert len(predicted) == 20 and all(p["excluded"] == "False" for p in predicted)
    assert list((out / "predict" / "heatmaps").glob("*.png"))
    assert len(list((out / "umap").glob("umap_*.png"))) == 8  # cells and fields, four encoders
    # the last stage: the 15 new chula fields triaged for schistocytes, the review page named, not opened
    worklist = list(csv.DictReader(open(out / "triage" / "worklist.csv")))
    assert len(worklist) == 15 and (out / "triage" / "review.html").is_file()
    assert str(out / "triage" / "review.html") in r.stdout.replace("\n", "")
    report = out / "report.html"
    text = report.read_text()
    assert text.index("Summary: what the results say") < text.index("<h2>Results")
    assert 100_000 < report.stat().st_size < 6_000_000  # figures embedded, sized to load fast
    assert wall < 12 * 60, f"demo took {wall:.0f} s"
    # a second run reuses every stage, evaluation included
    t1 = time.perf_counter()
    r = subprocess.run([*cytofm, "demo", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0 and time.perf_counter() - t1 < wall / 2
    assert r.stderr.count("evaluation unchanged, reused") == 8  # 2 tasks x 4 encoders
    for width, name in ((1440, "desktop"), (1024, "laptop")):
        img = chromium_screenshot(report, tmp_path / f"demo_report_{name}.png", width, 900)
        assert_report_frame(img)  # margins, title and section rules where the stylesheet puts them
        shutil.copy(tmp_path / f"demo_report_{name}.png",
                    Path(tempfile.gettempdir()) / f"cytofm_demo_report_{name}.png")
