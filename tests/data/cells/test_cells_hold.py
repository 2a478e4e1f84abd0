"""One cell stays one cell, two stay two, and the nucleus is found by the image's own colours: planted
white cells (purple nuclei in lilac cytoplasm) among pink red cells, and four real BCCD fields side by
side."""

from __future__ import annotations

import numpy as np
import pytest

from cytofm.data.cells.detect import clump_share, clump_warning, detect_source
from cytofm.data.cells.morphometrics import outline_confidence
from cytofm.data.cells.nuclei import chromatin_cut, red_absorption
from cytofm.data.cells.watershed import detect_watershed
from cytofm.data.prepare.config import CellsConfig

from tests.helpers import shared_data, smear

MPP = 0.25
CFG = CellsConfig(typical_diameter_um=7.5, min_diameter_um=4, max_diameter_um=25)
RED, CYTO, NUCLEUS = (191, 164, 167), (201, 190, 197), (151, 108, 213)  # BCCD-like: OD 0.3, 0.14, 0.5


def _paint(rgb, cx, cy, r, colour):
    yy, xx = np.mgrid[:rgb.shape[0], :rgb.shape[1]]
    rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour


def _white_cell(rgb, cx, cy, r=24, lobes=((0, 0, 9),)):
    _paint(rgb, cx, cy, r, CYTO)
    for dx, dy, lr in lobes:
        _paint(rgb, cx + dx, cy + dy, lr, NUCLEUS)


def test_the_chromatin_side_is_cut_only_where_the_image_holds_a_second_colour():
    rgb, _ = smear(160, 160, [(50, 50, 16), (110, 110, 16)], color=RED, seed=1)
    from cytofm.data.cells.watershed import stained_mask

    mask, od = stained_mask(rgb, CFG, MPP)
    assert chromatin_cut(red_absorption(od), mask, 0.2) is None  # red cells alone: one population
    _paint(rgb, 110, 110, 8, NUCLEUS)
    mask, od = stained_mask(rgb, CFG, MPP)
    score = red_absorption(od)
    cut = chromatin_cut(score, mask, 0.2)
    assert cut is not None and score[110, 110] > cut > score[50, 50]


def test_a_lobed_nucleus_stays_one_cell_with_one_nucleus():
    rgb, _ = smear(160, 160, [], seed=2)
    # four lobes 2-3 px (0.5-0.75 um) apart in a ring, as a neutrophil's: one nucleus, one cell
    _white_cell(rgb, 80, 80, 24, lobes=((-8, -7, 6), (7, -8, 6), (8, 7, 6), (-7, 8, 6)))
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 1 and not t.clump[0]
    assert t.measures["area_um2"][0] == pytest.approx(np.pi * (24 * MPP) ** 2, rel=0.1)
    assert t.measures["nucleus_area_um2"][0] >= 4 * np.pi * (6 * MPP) ** 2 * 0.9
    assert t.measures["seg_confidence"][0] == pytest.approx(1.0)


def test_a_pale_hole_inside_a_nucleus_is_not_a_cell():
    rgb, _ = smear(160, 160, [], seed=3)
    _white_cell(rgb, 80, 80, 24, lobes=((0, 0, 13),))
    _paint(rgb, 80, 80, 5, CYTO)  # a pale region inside the nucleus
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 1
    assert t.measures["nucleus_area_um2"][0] == pytest.approx(np.pi * (13 * MPP) ** 2, rel=0.15)


def test_a_white_cell_touching_three_red_cells_comes_out_as_four_cells():
    rgb, _ = smear(200, 200, [], seed=4)
    r_w, r_r = 22, 15
    at = [(100 + (r_w + r_r - 3) * np.cos(a), 100 + (r_w + r_r - 3) * np.sin(a)) for a in (0, 2.1, 4.2)]
    for x, y in at:
        _paint(rgb, x, y, r_r, RED)
    _white_cell(rgb, 100, 100, r_w, lobes=((0, 0, 11),))
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 4 and not t.clump.any()
    white = int(np.argmax(t.measures["nucleus_area_um2"]))
    assert np.hypot(*(t.centre[white] - 100)) <= 5  # 1.25 um: it takes in slivers of the red cells
    # within a quarter: it takes in slivers of the red cells it overlaps (3 px each)
    assert t.measures["area_um2"][white] == pytest.approx(np.pi * (r_w * MPP) ** 2, rel=0.25)
    assert (np.delete(t.measures["nucleus_area_um2"], white) == 0).all()
    # the white cell is cut from three cells: part of its outline is chosen, not seen
    assert 0.3 < t.measures["seg_confidence"][white] < 0.95


def test_two_touching_white_cells_stay_two():
    rgb, _ = smear(160, 240, [], seed=5)
    _white_cell(rgb, 90, 80, 22, lobes=((0, 0, 10),))
    _white_cell(rgb, 132, 80, 22, lobes=((0, 0, 10),))
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) == 2 and (t.measures["nucleus_area_um2"] > 0).all()
    assert np.abs(np.sort(t.centre[:, 0]) - [90, 132]).max() <= 3


def test_outline_confidence_is_the_share_of_the_boundary_on_the_glass():
    labels = np.zeros((6, 8), np.int64)
    labels[1:5, 1:4] = 1  # a 4 x 3 cell whose right side (4 boundary pixels) touches cell 2
    labels[1:5, 4:7] = 2
    conf = outline_confidence(labels)
    # cell 1: boundary contacts: top 3, bottom 3, left 4 on glass; right 4 on cell 2 -> 10 / 14
    assert conf[1] == pytest.approx(10 / 14) and conf[2] == pytest.approx(10 / 14)
    labels[1:5, 4:7] = 0
    assert outline_confidence(labels)[1] == 1.0
    edge = np.ones((3, 3), np.int64)  # a cell filling the image: its outline is hidden
    assert outline_confidence(edge)[1] == 0.0


def test_a_field_that_is_mostly_clumps_is_said():
    cells = [(60 + 22 * i, 60 + 22 * j, 16) for i in range(6) for j in range(6)]
    rgb, _ = smear(260, 260, cells, color=RED, seed=6)
    t = detect_watershed(rgb, MPP, CFG.model_copy(update={"clump_cells": 5}))
    assert t.clump.any() and clump_share(t) > 0.5
    assert "cannot be trusted" in clump_warning(t) and clump_warning(t.select(~t.clump)) == ""


@pytest.mark.parametrize("colour", [(222, 220, 214), (0, 0, 0), (205, 140, 150), (255, 255, 255)])
def test_a_blank_dark_or_one_colour_field_has_no_cells(colour):
    rgb = np.full((120, 120, 3), colour, np.uint8)
    assert len(detect_watershed(rgb, MPP, CFG)) == 0


def test_a_field_of_stained_noise_gives_finite_outlines_and_measures():
    rng = np.random.default_rng(7)
    rgb = np.full((160, 160, 3), (222, 220, 214), np.uint8)
    rgb[:, 80:] = rng.integers(0, 200, (160, 80, 3), dtype=np.uint8)  # half the field dark noise
    t = detect_watershed(rgb, MPP, CFG)
    assert len(t) >= 1
    assert all(np.isfinite(c).all() for c in t.contour) and all(np.isfinite(n).all() for n in t.nucleus)
    for m in ("area_um2", "nucleus_to_cell", "seg_confidence", "eccentricity", "od_nuclear"):
        assert np.isfinite(t.measures[m]).all(), m
    assert (t.measures["seg_confidence"][t.clump] == 0).all()


def test_cytoplasm_beyond_the_reach_is_cut_and_the_outline_says_so():
    rgb, _ = smear(200, 200, [], seed=8)
    _white_cell(rgb, 100, 100, 28, lobes=((0, 0, 10),))  # 4.5 um of cytoplasm, the reach is 3 um
    t = detect_watershed(rgb, MPP, CFG)
    big = int(np.argmax(t.measures["area_um2"]))
    assert t.measures["area_um2"][big] < 0.8 * np.pi * (28 * MPP) ** 2
    assert t.measures["seg_confidence"][big] < 0.5  # not a confident outline: a cut through stained material
    wide = detect_watershed(rgb, MPP, CFG.model_copy(update={"cytoplasm_reach_um": 6.0}))
    assert len(wide) == 1 and wide.measures["seg_confidence"][0] == 1.0
    assert wide.measures["area_um2"][0] == pytest.approx(np.pi * (28 * MPP) ** 2, rel=0.05)


def test_a_large_object_is_kept_whole_only_where_most_of_it_split_into_irregular_pieces():
    from cytofm.data.cells.watershed import _unsplittable

    comps = np.zeros((10, 10), np.int64)
    comps[:, :6] = 1  # one large object, and a small one
    comps[:, 8:] = 2
    labels = np.zeros_like(comps)
    labels[:, :2], labels[:, 2:4], labels[:, 4:6], labels[:, 8:] = 1, 2, 3, 4
    kept, clumps = _unsplittable(labels.copy(), comps, {1, 2}, large=30)  # 40 of its 60 px irregular
    assert clumps == {5} and (kept[:, :6] == 5).all() and (kept[:, 8:] == 4).all()
    kept, clumps = _unsplittable(labels.copy(), comps, {1}, large=30)  # a third irregular: its cells
    assert clumps == {1} and (kept == labels).all()


class _Array:
    def __init__(self, rgb):
        self.rgb, self.path = rgb, "mosaic"
        self.height, self.width = rgb.shape[:2]

    def read(self, x, y, size, out=None):
        from PIL import Image

        crop = self.rgb[y:y + size[1], x:x + size[0]]
        return np.asarray(Image.fromarray(crop).resize(out, Image.BILINEAR)) if out else crop


def test_four_real_fields_side_by_side_give_the_white_cells_of_each_field_alone():
    from PIL import Image

    root = shared_data("bccd")
    names = ["BloodImage_00000.jpg", "BloodImage_00007.jpg", "BloodImage_00010.jpg", "BloodImage_00024.jpg"]
    fields = [np.asarray(Image.open(root / "images" / n).convert("RGB")) for n in names]
    mosaic = np.concatenate([np.concatenate(fields[:2], 1), np.concatenate(fields[2:], 1)], 0)
    cfg = CFG.model_copy(update={"work_mpp": 0.25})
    whole = detect_source(_Array(mosaic), 0.074, cfg)
    h, w = fields[0].shape[:2]
    for k, f in enumerate(fields):
        alone = detect_source(_Array(f), 0.074, cfg)
        want = alone.centre[alone.measures["nucleus_area_um2"] > 20]
        dx, dy = (k % 2) * w, (k // 2) * h
        c = whole.centre - [dx, dy]
        inside = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
        got = c[inside & (whole.measures["nucleus_area_um2"] > 20)]
        assert len(want) >= 1 and len(got) == len(want), names[k]
        # within 2 um: a cell on a seam meets the next field's cells, which it never met alone
        assert np.abs(np.sort(got, 0) - np.sort(want, 0)).max() <= 2 / 0.074, names[k]


def test_centroid_and_eccentricity_at_once_equal_scikit_images_per_region_values():
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    from cytofm.data.cells.morphometrics import _shape_moments

    rng = np.random.default_rng(0)
    labels = ndi.label(ndi.gaussian_filter(rng.random((300, 400)), 4) > 0.52)[0]
    props = regionprops(labels)
    cy, cx, ecc = _shape_moments(labels, np.array([p.label for p in props]))
    assert len(props) > 100
    np.testing.assert_allclose(np.c_[cy, cx], [p.centroid for p in props], atol=1e-9)
    np.testing.assert_allclose(ecc, [p.eccentricity for p in props], atol=1e-9)


@pytest.mark.parametrize("radius", [1, 3, 6])
def test_lobes_joined_by_distance_transforms_equal_a_closing_by_the_disk(radius):
    from scipy import ndimage as ndi

    from cytofm.data.cells.nuclei import joined

    rng = np.random.default_rng(radius)
    mask = ndi.gaussian_filter(rng.random((120, 150)), 2) > 0.56
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    r = radius
    want = ndi.binary_closing(np.pad(mask, r + 1), structure=x * x + y * y <= r * r)
    want = want[r + 1:-r - 1, r + 1:-r - 1]
    assert mask.sum() > 500 and (want != mask).sum() > 5
    np.testing.assert_array_equal(joined(mask, radius), want)


def test_a_field_whose_stain_cannot_be_estimated_is_said_and_detected_with_the_stain_vectors(tmp_path):
    from PIL import Image

    from cytofm.data.prepare.run import run_prepare

    from tests.helpers import prepare_cfg

    rgb, _ = smear(160, 160, [(50, 50, 16), (110, 110, 16)], color=RED, seed=9)
    saturated = rgb.copy()
    saturated[:, :100, 0] = 255  # the camera clipped the red channel over most of the field
    t = detect_watershed(saturated, MPP, CFG)
    assert len(t.notes) == 1 and "saturated" in t.notes[0] and "stain vectors" in t.notes[0]
    assert all(np.isfinite(c).all() for c in t.contour)
    assert detect_watershed(rgb, MPP, CFG).notes == []  # an ordinary field: nothing said
    one = np.full((120, 120, 3), (205, 140, 150), np.uint8)
    assert "one colour" in detect_watershed(one, MPP, CFG).notes[0]
    for glass in ((222, 220, 214), (255, 255, 255)):  # blank or overexposed glass: no stain, no problem
        assert detect_watershed(np.full((120, 120, 3), glass, np.uint8), MPP, CFG).notes == []
    Image.fromarray(saturated).save(tmp_path / "clipped.png")
    said = []
    run_prepare([str(tmp_path / "clipped.png")], tmp_path / "out",
                prepare_cfg("resolution.mpp=0.25", "cells.enabled=true", "foreground.min_fraction=0"),
                log=said.append)
    assert [m for m in said if m.startswith("warning:") and "saturated" in m]
    import csv

    (row,) = csv.DictReader(open(tmp_path / "out" / "manifest.csv"))
    assert "saturated" in row["cell_notes"]  # a record beside the log line
