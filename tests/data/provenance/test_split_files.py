"""The shipped pretraining/evaluation split: complete, disjoint, duplicate-safe, stratified, reproducible."""

import csv
import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from cytofm.data.provenance.split_files import DATASETS, load_split, part_of

from tests.helpers import shared_data

ROOT = Path(__file__).resolve().parents[3]


def _manifest(name, col):
    return [r[col] for r in csv.DictReader(open(shared_data(name) / "manifest.csv", newline=""))]


@pytest.mark.parametrize("name,col",
                         [("bccd", "image"), ("herlev", "image"), ("chula_rbc12", "path"), ("cric", "image")])
def test_every_image_is_in_exactly_one_part(name, col):
    split = load_split(name)
    assert sorted(split) == sorted(_manifest(name, col))
    assert set(split.values()) <= {"pretrain", "eval"}
    assert set(part_of(name, "pretrain")).isdisjoint(part_of(name, "eval"))


def test_cric_is_pretraining_only_and_shares_are_stratified():
    assert set(load_split("cric").values()) == {"pretrain"}
    for name, label in (("bccd", "wbc_type"), ("herlev", "label7")):
        rows = list(csv.DictReader(open(shared_data(name) / "manifest.csv", newline="")))
        split = load_split(name)
        by = Counter((r[label], split[r["image"]]) for r in rows)
        for lab in {r[label] for r in rows}:
            n = by[(lab, "eval")] + by[(lab, "pretrain")]
            if n >= 10:
                assert 0.3 <= by[(lab, "eval")] / n <= 0.5, (name, lab)


def test_near_duplicates_never_straddle_the_split():
    from cytofm.data.provenance.duplicates import near_duplicate_pairs
    from cytofm.data.provenance.hashing import hash_image

    split = load_split("bccd")
    assert split["images/BloodImage_00037.jpg"] == split["images/BloodImage_00038.jpg"]  # the same lymphocyte
    root = shared_data("herlev")
    images = _manifest("herlev", "image")
    split = load_split("herlev")
    pairs = near_duplicate_pairs([hash_image(root / im) for im in images])
    assert len(pairs) >= 10
    assert all(split[images[p.i]] == split[images[p.j]] for p in pairs)


def test_the_script_draws_the_same_split_again():
    spec = importlib.util.spec_from_file_location("mk", ROOT / "scripts" / "make_shared_split.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    rows = mk.split(shared_data("bccd").parent, "bccd")
    assert dict(rows) == load_split("bccd")


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="no shipped split"):
        load_split("fnac2019")
    assert "bccd" in DATASETS


def test_part_manifest_keeps_one_part_with_absolute_paths(tmp_path):
    from cytofm.data.provenance.split_files import write_part_manifest

    pre, ev = part_of("herlev", "pretrain")[:2], part_of("herlev", "eval")[:1]
    root = tmp_path / "herlev"
    root.mkdir()
    rows = [f"{n},m/{i}.bmp,normal_superficiel,normal" for i, n in enumerate(pre + ev)]
    (root / "manifest.csv").write_text("image,mask,label7,label2\n" + "\n".join(rows) + "\n")
    out = write_part_manifest(root, "herlev", "pretrain", tmp_path / "x" / "pre.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "image,mask,label7,label2" and len(lines) == 3
    assert lines[1].split(",")[0] == str((root / pre[0]).resolve())
    assert (lines[1].split(",")[1] == str((root / "m/0.bmp").resolve())
            and lines[1].endswith("normal_superficiel,normal"))
    with pytest.raises(ValueError, match="no image of the eval part"):
        (root / "manifest.csv").write_text("image,label7\n" + f"{pre[0]},a\n")
        write_part_manifest(root, "herlev", "eval", tmp_path / "e.csv")
