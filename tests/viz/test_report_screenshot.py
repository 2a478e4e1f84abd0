"""The report renders in headless Chromium as its stylesheet lays it out (slow tier)."""

import numpy as np
import pytest
from PIL import Image

from cytofm.viz.report import build_report

from tests.helpers import assert_report_frame, chromium_screenshot

pytestmark = pytest.mark.slow

BLUE = (0, 128, 255)


def test_report_renders_in_chromium(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    Image.new("RGB", (600, 300), BLUE).save(run / "x_heatmap.png")  # a solid figure: small, kept as PNG
    (run / "results.md").write_text("| task | bacc |\n|---|---|\n| t | 0.9 +- 0.1 |\n")
    report = build_report(run)
    rgb = chromium_screenshot(report, tmp_path / "shot.png", 1000, 900)
    assert_report_frame(rgb)
    # two h2 (the results, the heatmaps), each ruled across the 952 px content
    rules = np.nonzero(np.all(rgb[:, 24:976] == 0xDD, axis=(1, 2)))[0]
    assert len(rules) == 2
    # the heatmap in the .grid: columns minmax(420px, 1fr) with a 12 px gap in 952 px make two of 470 px; the
    # figure, max-width 100%, is scaled to 470 x 235 and sits in the first, under the second h2
    ys, xs = np.nonzero(np.all(rgb == BLUE, axis=-1))
    assert (xs.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (24, 470, 235)
    assert len(xs) == 470 * 235  # the whole figure, in its colour
    assert rules[1] < ys.min() < rules[1] + 40
