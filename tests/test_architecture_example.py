"""The worked example of docs/architecture.md ("How to add ..."): a cell detector added by copying the named
file and registering one line, nothing else edited. The copy is run by ``cytofm prepare --cells
--cell-detector`` and listed by ``cytofm doctor``, so an option or a listing kept by hand would fail here."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

import cytofm
from cytofm.cli.main import app
from cytofm.data.cells.registry import CELL_DETECTORS
from cytofm.data.cells.watershed import detect_otsu
from cytofm.data.prepare.config import CellsConfig

from tests.helpers import smear

APART = [(40, 40, 16), (120, 40, 16), (200, 60, 14), (250, 170, 18), (60, 190, 12)]
DIAMETERS = ["cells.typical_diameter_um=8", "cells.min_diameter_um=3", "cells.max_diameter_um=20"]


def test_a_detector_copied_from_the_named_file_and_registered_runs_everywhere(tmp_path, monkeypatch):
    # 1. copy the file the architecture table names for a detector (as a plug-in outside the package)
    named = Path(cytofm.__file__).parent / "data" / "cells" / "watershed.py"
    shutil.copy(named, tmp_path / "lab_detector.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    field = smear(240, 320, APART, seed=1)[0]
    (tmp_path / "in").mkdir()
    Image.fromarray(field).save(tmp_path / "in" / "field.png")
    # 2. register it: one line, the only edit
    with CELL_DETECTORS.temporarily("lab", "lab_detector:detect_otsu", "the lab's copy of the Otsu baseline"):
        r = CliRunner().invoke(app, ["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                     "--preset", "smear_cells", "--cells", "--cell-detector", "lab",
                                     "resolution.mpp=0.25", *DIAMETERS])
        assert r.exit_code == 0, r.output
        doctor = CliRunner().invoke(app, ["doctor"])
        assert doctor.exit_code == 0 and "the lab's copy of the Otsu baseline" in doctor.output
    rows = list(csv.DictReader(open(tmp_path / "out" / "cells.csv")))
    cfg = CellsConfig(typical_diameter_um=8, min_diameter_um=3, max_diameter_um=20)
    direct = detect_otsu(field, 0.25, cfg)
    assert len(rows) == len(direct) == len(APART)
    got = sorted((round(float(r["x"])), round(float(r["y"]))) for r in rows)
    assert got == sorted(map(tuple, np.round(direct.centre).astype(int).tolist()))
    # gone after the block: the name is refused again, with the detectors there are
    r = CliRunner().invoke(app, ["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--cells",
                                 "--cell-detector", "lab", "resolution.mpp=0.25"])
    assert r.exit_code == 2 and "unknown cell detector 'lab'" in r.output
