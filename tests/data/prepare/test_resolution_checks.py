"""A resolution that cannot be right is said, naming the file (#44): cells far from the typical size warn
with the um/px they suggest, cells a few pixels across are refused, a resampling that enlarges more than 2x
warns; a decimal comma in a manifest's mpp is read, other text refused by name; one wording when the
resolution is missing, an OME-TIFF without PhysicalSizeX named as such."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cytofm.data.prepare.prepared import load_prepared
from cytofm.data.prepare.run import NothingUsable, run_prepare

from tests.helpers import prepare_cfg as cfg
from tests.helpers import smear

# five planted cells of radius 16, 16, 14, 18, 12 px: median diameter 32 px (test_cell_detection)
APART = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]
CELLS = ("cells.enabled=true", "cells.typical_diameter_um=8", "cells.min_diameter_um=3",
         "cells.max_diameter_um=20", "foreground.min_fraction=0", "tiling.mode=whole")


def _skipped(out):
    with open(out / "skipped.csv") as f:
        return {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in csv.DictReader(f)}


def test_cells_far_from_the_typical_size_warn_with_the_mpp_they_suggest(tmp_path):
    Image.fromarray(smear(240, 320, APART, seed=1)[0]).save(tmp_path / "field.png")
    said = []
    res = run_prepare([str(tmp_path / "field.png")], tmp_path / "out", cfg("resolution.mpp=1", *CELLS),
                      log=said.append)
    assert len(res.rows) == 1 and res.rows[0]["n_cells"] == 5  # kept: the cells can still be measured
    # 32 um cells are over max_diameter_um: flagged as clumps, and that is said as well
    (w,) = [m for m in said if m.startswith("warning:") and "cells suggest" in m]
    assert [m for m in said if m.startswith("warning:") and "clump(s) kept whole" in m]
    # 32 px at 1 um/px is 32 um, 4x the typical 8 um: the cells suggest 8 / 32 = 0.25 um/px
    assert w.startswith(f"warning: {tmp_path / 'field.png'}: at 1 um/px the 5 cell(s) found are 31.9 um")
    assert "the cells suggest about 0.25 um/px" in w
    said.clear()  # at the right resolution: nothing said
    run_prepare([str(tmp_path / "field.png")], tmp_path / "ok", cfg("resolution.mpp=0.25", *CELLS),
                log=said.append)
    assert not [m for m in said if m.startswith("warning:")]


def test_cells_of_a_few_pixels_are_refused_naming_the_resolution(tmp_path):
    # 30 dots of radius 1 (5 px each): at --mpp 10 they are "cells" of 500 um^2, 2 * sqrt(5 / pi) = 2.52 px
    dots = [(20 + 40 * i, 20 + 40 * j, 1) for i in range(6) for j in range(5)]
    Image.fromarray(smear(200, 240, dots, seed=1)[0]).save(tmp_path / "smear.png")
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path / "smear.png")], tmp_path / "out",
                    cfg("resolution.mpp=10", "cells.enabled=true", "foreground.min_fraction=0",
                        "tiling.mode=whole"), log=lambda m: None)
    why = _skipped(tmp_path / "out")["smear.png"]
    assert why.startswith("at 10 um/px the 30 cell(s) found are 25.2 um (2.52 px) across (median)")
    assert "under 3 px across" in why and "check --mpp" in why


def test_resampling_that_enlarges_more_than_twice_warns(tmp_path):
    rgb, _ = smear(h=240, w=240, cells=((120, 120, 60),))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    said = []
    run_prepare([str(tmp_path / "a.png")], tmp_path / "out",
                cfg("resolution.mpp=10", "resolution.target_mpp=0.5", "tiling.patch_size=100"),
                log=said.append)
    assert [m for m in said if m.startswith("warning:")] == [
        f"warning: {tmp_path / 'a.png'}: resampling 10 um/px to 0.5 um/px enlarges it 20x (more than 2x: "
        "interpolated pixels, no new detail); check --mpp and --target-mpp"]
    said.clear()  # 2x exactly (0.5 -> 0.25) is the usual objective step: not warned
    run_prepare([str(tmp_path / "a.png")], tmp_path / "ok",
                cfg("resolution.mpp=0.5", "resolution.target_mpp=0.25", "tiling.patch_size=100"),
                log=said.append)
    assert not [m for m in said if m.startswith("warning:")]


def test_a_decimal_comma_is_read_and_other_text_refused_by_name(tmp_path):
    rgb, _ = smear(h=240, w=240, cells=((120, 120, 60),))
    for name in ("comma.png", "text.png", "empty.png"):
        Image.fromarray(rgb).save(tmp_path / name)
    (tmp_path / "m.csv").write_text("path,mpp\ncomma.png,\"0,25\"\ntext.png,0.25um\nempty.png,\n")
    res = run_prepare([str(tmp_path / "m.csv")], tmp_path / "out",
                      cfg("resolution.target_mpp=0.5", "tiling.patch_size=60"), log=lambda m: None)
    (row,) = res.rows
    assert row["mpp"] == 0.25 and row["patch_size_level0"] == 120  # 60 px at 0.5 um/px from 0.25 um/px
    assert load_prepared(tmp_path / "out")[0].mpp == 0.25  # the prepared manifest holds the number
    skipped = _skipped(tmp_path / "out")
    assert skipped["text.png"] == ("manifest line 3: mpp '0.25um' is not a number of um/px (e.g. 0.25; a "
                                   "decimal comma as in 0,25 is read too)")
    # the column is there, its cell empty: said so, not asked for the column
    assert skipped["empty.png"] == ("resolution unknown (the file records none): resampling to 0.5 um/px "
                                    "needs um/px; its 'mpp' cell in the manifest is empty: fill it, or give "
                                    "--mpp (resolution.mpp=...)")
    from cytofm.data.sources.resolution import BadResolution, parse_mpp

    assert parse_mpp("0,12") == 0.12 and parse_mpp(" 0.5 ") == 0.5 and parse_mpp("") is None
    # how R, spreadsheets and data frames write "not known": missing, so --mpp still applies
    assert all(parse_mpp(m) is None for m in ("NA", "n/a", "nan", "None", "-"))
    for bad in ("1,2,3", ",5", "0", "-1", "inf"):
        with pytest.raises(BadResolution, match="mpp"):
            parse_mpp(bad)


def test_an_ome_tiff_without_physical_size_is_named_as_such(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    planes = np.stack([smear(h=128, w=128, cells=((64, 64, 30),), seed=z)[0] for z in range(3)])
    tifffile.imwrite(tmp_path / "stack.ome.tif", planes, ome=True, photometric="rgb",
                     metadata={"axes": "ZYXS"})
    Image.fromarray(planes[0]).save(tmp_path / "plain.png")
    with pytest.raises(NothingUsable):
        run_prepare([str(tmp_path)], tmp_path / "out", cfg("resolution.target_mpp=0.5"), log=lambda m: None)
    skipped = _skipped(tmp_path / "out")
    assert skipped["stack.ome.tif"] == ("resolution unknown (the OME-TIFF has no PhysicalSizeX): resampling "
                                        "to 0.5 um/px needs um/px; give --mpp (resolution.mpp=...) or an "
                                        "'mpp' column in the manifest")
    assert skipped["plain.png"].startswith("resolution unknown (the file records none): resampling to 0.5")
