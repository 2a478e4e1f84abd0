"""Outline scoring against counts made by hand: Dice of known masks, filled polygons' pixels, and the
split / merged / found outcome of one annotated white cell on hand-painted label images."""

import numpy as np
import pytest

from cytofm.data.cells.morphometrics import outline
from cytofm.eval.segmentation import box_pieces, dice, fill_outlines, outside_share, white_cell_outcome

BOX = (20, 20, 60, 60)  # x0, y0, x1, y1, end exclusive: 40 x 40 = 1600 px; 20% = 320, 30% = 480


def _nucleus(rows=(30, 40), cols=(30, 40), shape=(100, 100)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_dice_of_two_overlapping_rectangles():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 4 x 5 = 20
    b[2:6, 2:8] = True  # 4 x 6 = 24; overlap rows 2-3, cols 2-4: 2 x 3 = 6
    assert dice(a, b) == pytest.approx(2 * 6 / (20 + 24))  # 3/11
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_dice_of_two_empty_masks_is_one():
    assert dice(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0


def test_fill_outlines_square_polygon_exact_pixels():
    # vertices on pixel centres are inside: x 2..6 (5 columns) by y 3..8 (6 rows) = 30 px
    sq = np.array([[2, 3], [6, 3], [6, 8], [2, 8]], np.float32)
    lab = fill_outlines([sq], (20, 20))
    want = np.zeros((20, 20), np.int32)
    want[3:9, 2:7] = 1
    np.testing.assert_array_equal(lab, want)
    # a square through the pixel corners (-0.5 .. 9.5): exactly the 10 x 10 pixels it encloses
    corners = np.array([[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5]], np.float32)
    assert int((fill_outlines([corners], (20, 20)) > 0).sum()) == 100


def test_fill_outlines_numbers_later_over_earlier_and_skips_empty():
    a = np.array([[0, 0], [3, 0], [3, 3], [0, 3]], np.float32)  # 16 px
    b = np.array([[2, 2], [5, 2], [5, 5], [2, 5]], np.float32)  # 16 px, 4 over a
    lab = fill_outlines([a, np.zeros((0, 2), np.float32), b], (8, 8))
    assert int((lab == 1).sum()) == 12 and int((lab == 3).sum()) == 16 and not (lab == 2).any()


def test_fill_outlines_gives_back_the_mask_a_detector_outlined():
    m = np.zeros((20, 30), bool)
    m[5:12, 6:20] = True
    m[8, 20] = True  # a one-pixel spur
    m[5, 6:9] = False  # a notch
    np.testing.assert_array_equal(fill_outlines([outline(m)], m.shape) > 0, m)


def test_one_cell_over_the_nucleus_is_found_whole():
    lab = np.zeros((100, 100), np.int32)
    lab[25:55, 25:55] = 1
    assert white_cell_outcome(lab, BOX, _nucleus()) == {"found": True, "split": False, "merged": False,
                                                        "label": 1}


def test_no_cell_on_the_nucleus_is_not_found():
    lab = np.zeros((100, 100), np.int32)
    lab[45:60, 45:60] = 1  # in the box, off the nucleus
    assert white_cell_outcome(lab, BOX, _nucleus()) == {"found": False, "split": False, "merged": False,
                                                        "label": 0}


def test_two_cells_touching_the_nucleus_each_a_fifth_of_the_box_are_a_split():
    lab = np.zeros((100, 100), np.int32)
    lab[20:60, 20:40] = 1  # 800 px = 50% of the box
    lab[20:60, 40:60] = 2  # 800 px
    nuc = _nucleus(cols=(33, 43))  # 70 px under cell 1, 30 under cell 2
    out = white_cell_outcome(lab, BOX, nuc)
    assert out == {"found": True, "split": True, "merged": False, "label": 1}
    assert box_pieces(lab, BOX, within=nuc) == [1, 2]


def test_a_piece_at_exactly_a_fifth_counts_and_a_smaller_one_does_not():
    lab = np.zeros((100, 100), np.int32)
    lab[20:60, 20:40] = 1
    lab[36:52, 40:60] = 2  # 16 x 20 = 320 px = 20% of the box, touches the nucleus (rows 36-39)
    assert white_cell_outcome(lab, BOX, _nucleus(cols=(33, 43)))["split"]
    lab[51, 40:60] = 0  # 300 px: 18.75%
    assert not white_cell_outcome(lab, BOX, _nucleus(cols=(33, 43)))["split"]


def test_red_cell_in_a_corner_of_the_box_is_not_a_piece():
    lab = np.zeros((100, 100), np.int32)
    lab[25:45, 25:45] = 1  # the white cell, 400 px = 25%
    lab[36:60, 45:60] = 2  # a red cell: 24 x 15 = 360 px = 22.5% of the box, not on the nucleus
    nuc = _nucleus()
    assert box_pieces(lab, BOX) == [1, 2]
    assert box_pieces(lab, BOX, within=nuc) == [1]
    assert white_cell_outcome(lab, BOX, nuc) == {"found": True, "split": False, "merged": False, "label": 1}


@pytest.mark.parametrize("extra_cols, share, merged",
                         [(10, 0.25, False), (12, 0.30, False), (14, 0.35, True)])
def test_cell_reaching_outside_the_box_is_merged_above_thirty_percent(extra_cols, share, merged):
    lab = np.zeros((100, 100), np.int32)
    lab[20:60, 20:60 + extra_cols] = 1  # the box and 40 x extra_cols px to its right
    assert outside_share(lab, 1, BOX) == pytest.approx(share)
    out = white_cell_outcome(lab, BOX, _nucleus())
    assert out["merged"] is merged and out["found"] and not out["split"] and out["label"] == 1


def test_nucleus_outside_the_box_is_not_this_white_cell():
    lab = np.zeros((100, 100), np.int32)
    lab[25:55, 25:55] = 1
    lab[70:95, 70:95] = 2  # a second white cell, its nucleus larger than this one's
    nuc = _nucleus() | _nucleus(rows=(72, 92), cols=(72, 92))
    assert white_cell_outcome(lab, BOX, nuc)["label"] == 1


def test_fill_outlines_draws_a_smaller_outline_over_a_larger_one_whatever_the_order():
    big = np.array([[0, 0], [7, 0], [7, 7], [0, 7]], np.float32)  # 64 px
    small = np.array([[2, 2], [4, 2], [4, 4], [2, 4]], np.float32)  # 9 px inside it
    for order in ([big, small], [small, big]):
        lab = fill_outlines(order, (8, 8))
        k_small = 1 + next(i for i, o in enumerate(order) if o is small)
        assert int((lab == k_small).sum()) == 9 and int((lab > 0).sum()) == 64
