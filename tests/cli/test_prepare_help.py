"""`cytofm prepare --help` offers every preset shipped (#44: smear_cells and pap_cells were missing): the
list is read from the YAML files, so a new preset cannot be left out."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from cytofm.cli.main import app

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "cytofm" / "config" / "presets" / "prepare"


def test_prepare_help_lists_every_shipped_preset():
    names = sorted(p.stem for p in SHIPPED.glob("*.yaml"))
    assert {"smear_cells", "pap_cells", "default", "wsi"} <= set(names)
    out = CliRunner().invoke(app, ["prepare", "--help"], terminal_width=2000).output
    text = re.sub(r"\s+", " ", out.replace("│", " "))  # the help's box and wrapping undone
    assert f"Config preset ({', '.join(names)}) or a YAML file." in text
