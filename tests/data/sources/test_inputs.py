"""Discovery: nothing vanishes without a word (symlinks, unreadable folders, repeated manifest rows)."""

import csv
import os

import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.sources.inputs import discover
from cytofm.data.sources.item_ids import assign_ids
from cytofm.utils.errors import InputError

from tests.helpers import smear


def _img(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smear(h=48, w=48, cells=((24, 24, 9),), seed=seed)[0]).save(path)


def _cfg(**meta):
    return PrepareConfig.model_validate({"metadata": {"labels_from_folders": True, **meta}})


def test_symlinked_class_folder_is_followed_and_loops_stop(tmp_path):
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere" / "malignant_cells"
    _img(root / "benign" / "b0.png")
    _img(elsewhere / "m0.png", 1)
    _img(elsewhere / "m1.png", 2)
    os.symlink(elsewhere, root / "malignant")
    os.symlink(root, root / "benign" / "loop")  # a link back up
    items, skips, notes = discover([str(root)], _cfg())
    got = sorted((it.meta["label"], it.path.name) for it in items)
    assert got == [("benign", "b0.png"), ("malignant", "m0.png"), ("malignant", "m1.png")]
    assert any("already visited through another path" in n for n in notes) and not skips


def test_unreadable_subfolder_is_recorded_and_prepare_goes_on(tmp_path, monkeypatch):
    root = tmp_path / "in"
    _img(root / "benign" / "b0.png")
    _img(root / "secret" / "s0.png")
    real = os.scandir

    def scandir(p):  # root bypasses permissions, so refuse the listing the way the OS would
        if str(p).endswith("secret"):
            raise PermissionError(13, "Permission denied")
        return real(p)

    monkeypatch.setattr(os, "scandir", scandir)
    items, skips, _ = discover([str(root)], _cfg())
    assert [it.path.name for it in items] == ["b0.png"]
    assert (len(skips) == 1 and skips[0].path.endswith("secret")
            and "cannot read folder (Permission denied)" in skips[0].reason)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["prepare", str(root), "--out", str(out), "--labels-from-folders",
                                 "--workers", "1"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out / "skipped.csv")))
    assert [(x["path"], x["reason"]) for x in rows] == [
        ("../in/secret", "cannot read folder (Permission denied); its files are left out")]
    # the input folder itself unreadable: one line and a non-zero exit, no traceback
    r = CliRunner().invoke(app, ["prepare", str(root / "secret"), "--out", str(tmp_path / "o2"),
                                 "--workers", "1"])
    assert r.exit_code == 1 and "Traceback" not in r.output and "nothing usable" in r.output


def _manifest(tmp_path, lines):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png", 1)
    m = tmp_path / "m.csv"
    m.write_text("path,label,patient\n" + "\n".join(lines) + "\n")
    return m


def test_repeated_manifest_rows_are_merged_with_a_note(tmp_path):
    m = _manifest(tmp_path, ["a.png,x,P1", "b.png,y,P2", "a.png,x,P1", "./a.png,x,P1"])
    items, _, notes = discover([str(m)], _cfg(labels_from_folders=False))
    assert [it.path.name for it in items] == ["a.png", "b.png"]
    assert any("lines 2, 4, 5 list the same file" in n and "kept once" in n for n in notes)


def test_conflicting_manifest_rows_refused_unless_told(tmp_path):
    m = _manifest(tmp_path, ["a.png,x,P1", "b.png,y,P2", "a.png,y,P1"])
    with pytest.raises(InputError, match=r"lines 2, 4 list the same file .*a.png with different values "
                                         r"\(label: 'x' vs 'y'\)"):
        discover([str(m)], _cfg(labels_from_folders=False))
    items, _, notes = discover([str(m)], _cfg(labels_from_folders=False, duplicates="first"))
    assert [(it.path.name, it.meta["label"]) for it in items] == [("a.png", "x"), ("b.png", "y")]
    items, skips, _ = discover([str(m)], _cfg(labels_from_folders=False, duplicates="drop"))
    assert [it.path.name for it in items] == ["b.png"] and "disagree" in skips[0].reason
    r = CliRunner().invoke(app, ["prepare", str(m), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert r.exit_code == 2 and "with different values" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["prepare", str(m), "--out", str(tmp_path / "o"), "--workers", "1",
                                 "--duplicates", "first", "tiling.patch_size=16"])
    assert r.exit_code == 0, r.output


def test_ids_are_unique_and_do_not_depend_on_other_files():
    rels = ["a b.jpg", "a_b.jpg", "a_b.png", "a+b.jpg", "x/y.png", "x__y.png"]
    ids, clashes = assign_ids([(r, r) for r in rels])
    assert len(set(ids)) == len(ids)
    alone = {r: assign_ids([(r, r)])[0][0] for r in ("a b.jpg", "a+b.jpg")}
    assert ids[0] == alone["a b.jpg"] and ids[3] == alone["a+b.jpg"]  # a hash of the file's own name
    assert ids[1] == "a_b" and ids[2].startswith("a_b-") and ids[4] == "x__y"
    # ids given by an earlier run stay, even when a file that sorts first arrives
    ids2, _ = assign_ids([("a_b.bmp", "a_b.bmp"), ("a_b.png", "a_b.png")], previous={"a_b.png": "a_b"})
    assert ids2[1] == "a_b" and ids2[0] != "a_b"
    assert {c["shared_name"] for c in clashes} == {"a_b", "x__y"}
