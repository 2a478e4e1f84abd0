"""The report renders in headless Chromium (slow tier)."""

import numpy as np
import pytest

from cytofm.viz.report import build_report

from tests.conftest import chromium_screenshot

pytestmark = pytest.mark.slow


def test_report_renders_in_chromium(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    run.mkdir()
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((20, 20)))
    ax.set_title("a heatmap")
    fig.savefig(run / "x_heatmap.png")
    plt.close(fig)
    (run / "results.md").write_text("| task | bacc |\n|---|---|\n| t | 0.9 +- 0.1 |\n")
    report = build_report(run)
    img = chromium_screenshot(report, tmp_path / "shot.png", 1000, 900)
    assert img.std() > 10
