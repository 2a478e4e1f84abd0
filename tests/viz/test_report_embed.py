"""The report opens with the summary in words and embeds large figures downscaled as JPEG (fast to load)."""

import base64
import io
import re

import numpy as np
from PIL import Image

from cytofm.viz.report import EMBED_MAX_PX, build_report


def test_summary_first_and_large_figures_downscaled(tmp_path):
    run = tmp_path / "run"
    (run / "benchmark").mkdir(parents=True)
    (run / "benchmark" / "results.md").write_text("| task | bacc |\n|---|---|\n| t | 0.9 |\n")
    (run / "benchmark" / "summary.md").write_text(
        "## Summary\n\n- cells (linear): cytofm does NOT beat random init.\n")
    noise = np.random.default_rng(0).integers(0, 255, (1200, 1600, 3)).astype(np.uint8)
    Image.fromarray(noise).save(run / "big_heatmap.png")
    Image.fromarray(noise[:40, :40]).save(run / "small_heatmap.png")
    text = build_report(run).read_text()
    assert text.index("cytofm does NOT beat random init.") < text.index("<h2>Results")
    jpegs = re.findall(r"data:image/jpeg;base64,([^']+)", text)
    pngs = re.findall(r"data:image/png;base64,([^']+)", text)
    assert len(jpegs) == 1 and len(pngs) == 1  # the small figure is kept as it is
    big = Image.open(io.BytesIO(base64.b64decode(jpegs[0])))
    assert big.size == (EMBED_MAX_PX, EMBED_MAX_PX * 3 // 4)
    assert len(text) < (run / "big_heatmap.png").stat().st_size / 2
