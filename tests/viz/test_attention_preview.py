"""The plain attention preview `predict` draws: each patch of the thumbnail coloured by its attention on the
overlay's colour scale, pixels under no patch greyed, at the thumbnail's scale."""

import matplotlib
import numpy as np
from PIL import Image

from cytofm.viz.figures import HEAT_ALPHA, NOT_KEPT, NOT_KEPT_ALPHA
from cytofm.viz.heatmaps import attention_preview_png


def test_preview_colours_each_patch_by_its_attention(tmp_path):
    Image.fromarray(np.full((400, 800, 3), 200, np.uint8)).save(tmp_path / "f.png")
    coords = np.array([[0, 0], [400, 0]])  # two 400 px patches, level 0
    out = attention_preview_png(str(tmp_path / "f.png"), coords, 400, [0.9, 0.1], tmp_path / "p.png",
                                max_side=400, log=lambda m: None)
    img = np.asarray(Image.open(out)).astype(float) / 255
    assert img.shape == (200, 400, 3)  # the thumbnail: 800 px -> 400 px
    cmap = matplotlib.colormaps["inferno"]
    grey = 200 / 255
    for x, norm in ((100, 1.0), (300, 0.0)):  # the most attended patch at the top of the scale
        want = grey * (1 - HEAT_ALPHA) + np.asarray(cmap(norm)[:3]) * HEAT_ALPHA
        assert np.abs(img[100, x] - want).max() <= 1 / 255
    Image.fromarray(np.full((400, 1000, 3), 200, np.uint8)).save(tmp_path / "g.png")
    out = attention_preview_png(str(tmp_path / "g.png"), coords, 400, [0.9, 0.1], tmp_path / "q.png",
                                max_side=500, log=lambda m: None)
    img = np.asarray(Image.open(out)).astype(float) / 255
    want = grey * (1 - NOT_KEPT_ALPHA) + np.asarray(NOT_KEPT) * NOT_KEPT_ALPHA  # under no patch
    assert np.abs(img[100, 450] - want).max() <= 1 / 255
    assert attention_preview_png(str(tmp_path / "missing.png"), coords, 400, [1, 0], tmp_path / "r.png",
                                 log=lambda m: None) is None
