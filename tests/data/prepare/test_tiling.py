import numpy as np

from cytofm.data.prepare.tiling import grid_coords, grid_positions


def test_grid_positions_exact_fit():
    assert grid_positions(300, 100, 100).tolist() == [0, 100, 200]


def test_grid_positions_shift_covers_border():
    assert grid_positions(250, 100, 100, "shift").tolist() == [0, 100, 150]
    assert grid_positions(250, 100, 100, "drop").tolist() == [0, 100]


def test_grid_positions_overlap_and_too_small():
    assert grid_positions(200, 100, 50).tolist() == [0, 50, 100]
    assert grid_positions(99, 100, 100).tolist() == []


def test_grid_coords_row_major_xy():
    c = grid_coords(250, 200, 100, 100)
    assert c.tolist() == [[0, 0], [100, 0], [150, 0], [0, 100], [100, 100], [150, 100]]
    assert grid_coords(50, 500, 100, 100).shape == (0, 2)
    # shift mode covers every pixel
    cover = np.zeros((200, 250), bool)
    for x, y in c:
        cover[y:y + 100, x:x + 100] = True
    assert cover.all()
