"""Cells in the pretraining pool: a folder prepared with ``--cells`` gives one sample per detected cell,
the same square ``extract --mode cells`` embeds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cytofm.data.prepare.run import run_prepare
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.utils.errors import InputError

from tests.helpers import prepare_cfg, smear, tiny_cfg

APART = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]
CELLS = ("cells.enabled=true", "resolution.mpp=0.25", "cells.typical_diameter_um=8",
         "cells.min_diameter_um=3", "cells.max_diameter_um=20")


@pytest.fixture()
def prepared(tmp_path):
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig

    (tmp_path / "in").mkdir()
    field = smear(240, 320, APART, seed=1)[0]
    Image.fromarray(field).save(tmp_path / "in" / "field.png")
    cfg = build_config(PrepareConfig, "prepare", "smear_cells", list(CELLS))
    run_prepare([str(tmp_path / "in")], tmp_path / "p", cfg, log=lambda m: 0)
    return tmp_path / "p", field


def test_one_sample_per_cell_the_square_extract_reads(prepared):
    from cytofm.data.cells.store import read_cells

    folder, field = prepared
    cells = read_cells(folder / "cells" / "field.h5")
    table = load_table(folder, cells=True)
    assert len(table) == len(cells) == len(APART)
    b = PretrainingBatches([table], tiny_cfg())
    side = 64  # twice the typical 8 um at 0.25 um/px, as extract --mode cells
    white = np.pad(field, ((side, side), (side, side), (0, 0)), constant_values=255)
    for ref, centre in zip(table.refs, cells.centre, strict=True):
        x, y = int(ref[1]), int(ref[2])
        assert abs(x + side / 2 - centre[0]) <= 0.5 and abs(y + side / 2 - centre[1]) <= 0.5
        img = np.asarray(b.sample_image(table, ref))
        assert img.shape == (side, side, 3)
        assert np.array_equal(img, white[y + side:y + 2 * side, x + side:x + 2 * side])
    # a given crop size in micrometres: 10 um at 0.25 um/px
    assert np.asarray(PretrainingBatches([t := load_table(folder, cells=True, cell_crop_um=10)], tiny_cfg())
                      .sample_image(t, t.refs[0])).shape == (40, 40, 3)
    assert len(load_table(folder)) != len(cells)  # without cells=True: its patches


def test_pretraining_mixes_cells_and_patches(prepared, tmp_path):
    from cytofm.ssl.trainer import SSLTrainer

    folder, _ = prepared
    t = SSLTrainer(tiny_cfg("train.iterations=2", "data.cells=[true,false]"), [str(folder), str(folder)],
                   tmp_path / "run", log=lambda m: None)
    assert len(t.tables[0]) == len(APART) and len(t.tables[1]) == len(load_table(folder))
    t.run()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    with pytest.raises(InputError, match="data.cells has 1 values for 2"):
        SSLTrainer(tiny_cfg("data.cells=[true]"), [str(folder), str(folder)], tmp_path / "r2", log=print)


def test_a_folder_without_cells_is_refused_with_its_name(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(smear(128, 128, APART[:1], seed=1)[0]).save(tmp_path / "in" / "f.png")
    run_prepare([str(tmp_path / "in")], tmp_path / "p", prepare_cfg("tiling.patch_size=64"), log=lambda m: 0)
    with pytest.raises(InputError, match=r"p: data.cells is on for it, but it is not a folder prepared with"):
        load_table(tmp_path / "p", cells=True)
