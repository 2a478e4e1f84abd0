"""A fixed split reads a manifest by the same path columns as ``prepare``: a manifest ``prepare`` takes
(here with ``image_path``) is not refused by the split."""

from __future__ import annotations

import csv

import pytest

from cytofm.data.provenance import split_parts
from cytofm.data.provenance.split_parts import part_manifest
from cytofm.data.sources import inputs
from cytofm.data.sources.inputs import PATH_COLUMNS, path_column


def test_one_path_column_list_for_prepare_and_splits():
    assert split_parts.PATH_COLUMNS is inputs.PATH_COLUMNS
    assert path_column(["label", "Image_Path"]) == "Image_Path"
    assert path_column(["path", "image"]) == "path"  # the first in PATH_COLUMNS wins
    assert path_column(["label"]) is None


@pytest.mark.parametrize("col", PATH_COLUMNS)
def test_a_manifest_prepare_reads_works_in_a_fixed_split(tmp_path, col):
    (tmp_path / "manifest.csv").write_text(f"{col},label\nimages/a.png,x\nimages/b.png,y\n")
    out, n = part_manifest(tmp_path / "manifest.csv", {"images/a.png": "eval", "images/b.png": "pretrain"},
                           "eval", tmp_path / "out" / "manifest.csv")
    rows = list(csv.DictReader(open(out, newline="")))
    assert n == 1 and rows == [{col: str((tmp_path / "images" / "a.png").resolve()), "label": "x"}]


def test_a_manifest_without_a_path_column_is_refused_naming_them(tmp_path):
    (tmp_path / "manifest.csv").write_text("label\nx\n")
    with pytest.raises(ValueError, match="no image path column.*image_path"):
        part_manifest(tmp_path / "manifest.csv", {}, "eval", tmp_path / "o.csv")
