"""The heatmap `predict` draws for an item: the image beside its attention overlay, both of the image's
aspect, a colour bar from the item's minimum to its maximum attention, and the predicted class with its
probability as the caption; a small image enlarged to be read."""

import matplotlib
import numpy as np
from PIL import Image

from cytofm.pipeline.predict_attention import caption
from cytofm.viz.figures import HEAT_ALPHA
from cytofm.viz.heatmaps import prediction_heatmap_png, preview_layout


def test_the_image_beside_its_overlay_with_a_colour_bar_and_the_prediction(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "f.png")
    text = caption("x1", {"pred": "blast", "p_blast": 0.93, "p_normal": 0.07, "label": "blast"})
    assert text == "x1: predicted blast (p = 0.930); label blast"
    out = prediction_heatmap_png(str(tmp_path / "f.png"), np.array([[0, 0], [32, 0]]), 32, [0.9, 0.1],
                                 tmp_path / "x1_attention.png", text, log=lambda m: None)
    png = Image.open(out)
    lines = png.text["Description"].split("\n")
    assert lines == [text, "colour: attention weight of each patch, from this item's minimum 0.1 (dark) to "
                     "its maximum 0.9 (bright); grey: not kept (background)"]
    fig = np.asarray(png.convert("RGB"))
    box = preview_layout(384, 512, 2)  # 64 px wide: enlarged 8 times to reach 512
    assert fig.shape == (box["canvas"][3], box["canvas"][2], 3)

    def part(name):
        x0, y0, x1, y1 = box[name]
        return fig[y0:y1, x0:x1]

    left, right, bar = part("left"), part("right"), part("bar")
    assert left.shape == right.shape == (384, 512, 3)  # two panels of the image's aspect (3:4)
    assert np.array_equal(left, np.repeat(np.repeat(img, 8, 0), 8, 1))  # the image itself, pixels repeated
    top = np.asarray(matplotlib.colormaps["inferno"](1.0)[:3])
    want = (img[5, 5] / 255 * (1 - HEAT_ALPHA) + top * HEAT_ALPHA) * 255  # the most attended patch
    assert np.abs(right[5 * 8, 5 * 8] - want).max() <= 1
    cmap = matplotlib.colormaps["inferno"]
    assert np.array_equal(bar[0, 0], (np.asarray(cmap(1.0)[:3]) * 255).round())  # max at the top
    assert np.array_equal(bar[-1, -1], (np.asarray(cmap(0.0)[:3]) * 255).round())  # min at the bottom
    assert (part("caption") < 100).any()  # the caption is drawn, not only recorded
    assert caption("x2", None) == "x2: attention of the model"
