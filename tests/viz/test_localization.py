import numpy as np
import pytest

from cytofm.viz.figures import paint_patches
from cytofm.viz.localization import boxes_mask, map_scores, patch_scores, summarise


def test_boxes_mask_union():
    m = boxes_mask([[10, 20, 30, 25], [0, 0, 2, 2]], (40, 50))
    assert m.sum() == 20 * 5 + 4 and m[20, 10] and not m[25, 10]


def test_pixel_map_perfect_and_uniform():
    mask = boxes_mask([[10, 10, 30, 20]], (40, 40))  # 200 of 1600 pixels
    perfect = mask.astype(float)
    s = map_scores(perfect, mask)
    assert s["mass"] == pytest.approx(1.0) and s["hit"]
    s = map_scores(np.ones((40, 40)), mask)
    assert s["mass"] == pytest.approx(200 / 1600) == pytest.approx(s["chance_mass"])
    off = np.zeros((40, 40))
    off[35, 35] = 1
    s = map_scores(off, mask)
    assert s["mass"] == 0 and not s["hit"]


def test_patch_scores_perfect_uniform_and_partial():
    # a 4x4 grid of 10-px patches; the box covers patch (1, 1) exactly and half of patch (2, 1)
    coords = np.array([(x, y) for y in range(0, 40, 10) for x in range(0, 40, 10)])
    mask = boxes_mask([[10, 10, 25, 20]], (40, 40))
    one = np.zeros(16)
    one[5] = 1.0  # patch at (10, 10)
    s = patch_scores(one, coords, 10, mask)
    assert s["mass"] == pytest.approx(1.0) and s["hit"]
    s = patch_scores(np.ones(16), coords, 10, mask)
    assert s["mass"] == pytest.approx(1.5 / 16) == pytest.approx(s["chance_mass"])
    assert s["chance_hit"] == pytest.approx(1 / 16)  # only patch (1, 1) has its centre on the box
    half = np.zeros(16)
    half[6] = 3.0  # unnormalised weights are normalised
    s = patch_scores(half, coords, 10, mask)
    assert s["mass"] == pytest.approx(0.5) and not s["hit"]  # centre (25, 15) is just off the box


def test_summarise_means():
    s = summarise([{"mass": 1, "hit": True, "chance_mass": 0.1, "chance_hit": 0.1},
                   {"mass": 0, "hit": False, "chance_mass": 0.3, "chance_hit": 0.2}])
    assert s == {"n": 2, "mass": 0.5, "hit": 0.5, "chance_mass": pytest.approx(0.2),
                 "chance_hit": pytest.approx(0.15)}


def test_planted_patch_lights_the_right_spot():
    coords = np.array([(x, y) for y in range(0, 80, 16) for x in range(0, 96, 16)])
    w = np.full(len(coords), 0.01)
    k = int(np.flatnonzero((coords[:, 0] == 48) & (coords[:, 1] == 32))[0])
    w[k] = 1.0
    heat = paint_patches((80, 100), coords, 16, w)
    ys, xs = np.nonzero(heat == np.nanmax(heat))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (48, 63, 32, 47)
    assert np.isnan(heat[:, 96:]).all()  # no patch there


def test_overlapping_patches_are_averaged():
    heat = paint_patches((20, 30), np.array([(0, 0), (10, 0)]), 20, [1.0, 3.0])
    assert heat[5, 5] == 1.0 and heat[5, 15] == 2.0 and heat[5, 25] == 3.0


def test_summarise_reads_csv_rows():
    s = summarise([{"mass": "0.5", "hit": "True", "chance_mass": "0.1", "chance_hit": "0.2"},
                   {"mass": "0.1", "hit": "False", "chance_mass": "0.1", "chance_hit": "0.2"}])
    assert s["hit"] == 0.5 and s["mass"] == pytest.approx(0.3)
