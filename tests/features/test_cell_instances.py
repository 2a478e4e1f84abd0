"""Cells as instances: ``extract --mode cells`` crops each detected cell at one physical size, and
``--encoder morphometrics`` turns the measurements into features."""

from __future__ import annotations

import numpy as np

from tests.helpers import smear

APART = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]



def test_extract_cells_embeds_one_crop_per_cell_and_morphometrics_reads_the_measurements(tmp_path):
    """``extract --mode cells``: one instance per detected cell, a square of the crop size centred on it
    (its top-left corner stored as for patches); ``--encoder morphometrics``: the measurements, sizes as
    the log of their ratio to the typical cell."""
    from PIL import Image
    from typer.testing import CliRunner

    from cytofm.cli.main import app
    from cytofm.data.cells.store import read_cells
    from cytofm.features.store import load_store, read_item

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smear(240, 320, APART, seed=1)[0]).save(src / "field.png")
    runner = CliRunner()
    r = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "prep"), "--preset", "smear_cells",
                            "--cells", "resolution.mpp=0.25", "cells.typical_diameter_um=8",
                            "cells.min_diameter_um=3", "cells.max_diameter_um=20"])
    assert r.exit_code == 0, r.output
    cells = read_cells(tmp_path / "prep" / "cells" / "field.h5")
    r = runner.invoke(app, ["extract", "--input", str(tmp_path / "prep"), "--mode", "cells", "--encoder",
                            "handcrafted", "--out", str(tmp_path / "f"), "workers=0"])
    assert r.exit_code == 0, r.output
    (row,) = load_store(tmp_path / "f")
    f, coords, attrs = read_item(row["h5"])
    side = 64  # twice the typical 8 um at 0.25 um/px
    assert len(f) == len(cells) == len(APART) and attrs["patch_size_level0"] == side
    assert np.abs(coords + side / 2 - cells.centre).max() <= 0.5
    r = runner.invoke(app, ["extract", "--input", str(tmp_path / "prep"), "--mode", "cells", "--encoder",
                            "morphometrics", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    m, _, _ = read_item(load_store(tmp_path / "m")[0]["h5"])
    typical = np.pi * 4.0 ** 2
    assert m.shape == (len(cells), 8)
    assert np.allclose(m[:, 0], np.log(cells.measures["area_um2"] / typical), atol=1e-5)
    assert np.allclose(m[:, 5], cells.measures["nucleus_to_cell"])
    r = runner.invoke(app, ["extract", "--input", str(src), "--mode", "cells", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "prepared with `cytofm prepare --cells`" in " ".join(r.output.split())
