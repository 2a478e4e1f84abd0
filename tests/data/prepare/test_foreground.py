import math

import numpy as np
import pytest

from cytofm.data.prepare.config import ForegroundConfig
from cytofm.data.prepare.foreground import (
    background_intensity,
    box_fractions,
    find_foreground,
    optical_density,
    otsu_threshold,
)

from tests.helpers import smear

# Typical stain colours: Papanicolaou (blue cytoplasm, orange keratinised, pink), Giemsa purple, H&E.
STAINS = {
    "pap_blue": (120, 160, 190),
    "pap_orange": (225, 160, 90),
    "pap_pink": (215, 150, 170),
    "giemsa_purple": (120, 80, 160),
    "he_hematoxylin": (90, 70, 140),
}


def test_optical_density_hand_values():
    bg = np.array([255.0, 255.0, 255.0])
    rgb = np.array([[[255, 25, 2]]], np.uint8)
    od = optical_density(rgb, bg)[0, 0]
    assert od[0] == pytest.approx(0.0)
    assert od[1] == pytest.approx(-math.log10(26 / 256), rel=1e-5)
    assert od[2] == pytest.approx(-math.log10(3 / 256), rel=1e-5)


def test_background_is_the_glass_not_the_cells():
    rgb, _ = smear()
    bg = background_intensity(rgb)
    assert np.allclose(bg, (222, 220, 214), atol=3)


def test_otsu_splits_two_modes():
    v = np.concatenate([np.full(100, 0.1), np.full(50, 0.9)])
    t = otsu_threshold(v)
    assert 0.1 <= t < 0.9


@pytest.mark.parametrize("stain", sorted(STAINS))
def test_mask_finds_cells_of_every_stain(stain):
    rgb, truth = smear(color=STAINS[stain])
    m = find_foreground(rgb, ForegroundConfig()).mask
    iou = (m & truth).sum() / (m | truth).sum()
    assert iou > 0.95, f"{stain}: IoU {iou:.3f}"


def test_blank_glass_has_no_foreground():
    rgb, _ = smear(cells=())
    assert find_foreground(rgb, ForegroundConfig()).mask.sum() == 0
    # Otsu mode too: the floor keeps noise from becoming foreground
    cfg = ForegroundConfig(od_threshold=None, sat_threshold=None)
    assert find_foreground(rgb, cfg).mask.sum() == 0


def test_dust_is_removed_and_holes_filled():
    rgb, truth = smear(cells=((100, 100, 30),))
    rgb[10:13, 10:13] = (60, 60, 60)  # 9-pixel speck
    rgb[98:102, 98:102] = (222, 220, 214)  # a pale hole inside the cell
    m = find_foreground(rgb, ForegroundConfig(min_object_px=30)).mask
    assert not m[10:13, 10:13].any()
    assert m[98:102, 98:102].all()


def test_box_fractions_hand_computed():
    m = np.zeros((10, 10), bool)
    m[0:5, 0:5] = True
    f = box_fractions(m, np.array([[0, 0, 5, 5], [0, 0, 10, 10], [5, 5, 10, 10], [3, 3, 7, 7], [8, 8, 20, 20],
                                   [20, 20, 30, 30]]))
    assert f.tolist() == [1.0, 0.25, 0.0, 4 / 16, 0.0, 0.0]


def test_integer_fast_path_equals_float_definition():
    from cytofm.data.prepare.foreground import clean_mask, max_optical_density, saturation

    rng = np.random.default_rng(3)
    rgb, _ = smear(color=STAINS["pap_pink"])
    rgb = np.clip(rgb.astype(int) + rng.integers(-40, 40, rgb.shape), 0, 255).astype(np.uint8)
    cfg = ForegroundConfig()
    got = find_foreground(rgb, cfg)
    od = optical_density(rgb, got.background).max(axis=-1)
    assert np.allclose(max_optical_density(rgb, got.background), od, atol=1e-5)
    raw = (od > cfg.od_threshold) | ((saturation(rgb) > cfg.sat_threshold) & (rgb.max(axis=-1) > 30))
    assert np.array_equal(got.mask, clean_mask(raw, cfg.close_px, cfg.min_object_px))
