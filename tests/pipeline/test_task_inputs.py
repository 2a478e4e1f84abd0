"""What a benchmark task evaluates on: cells cut around annotated points
(cytofm.data.annotations.point_crops), one part
of a fixed split (cytofm.data.provenance.split_parts), and how the pipeline and the pretraining guard use
them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cytofm.data.annotations.point_crops import point_crops
from cytofm.data.provenance.split_parts import load_split_map, part_manifest
from cytofm.eval.config import TaskConfig
from cytofm.pipeline.benchmark import _task_input


def _rows(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def field(tmp_path):
    """A 10x20 field whose pixel (y, x) holds (y, x, 7): a crop says exactly where it was cut."""
    yy, xx = np.mgrid[0:10, 0:20]
    arr = np.stack([yy, xx, np.full_like(yy, 7)], -1).astype(np.uint8)
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        Image.fromarray(arr).save(tmp_path / "images" / f"{name}.png")
    with open(tmp_path / "cells.csv", "w") as f:
        f.write("image,x,y,type\nimages/a.png,0,0,normal\nimages/a.png,10,5,target\n"
                "images/b.png,19,9,normal\nimages/b.png,3,3,drop\n")
    return tmp_path, arr


def test_point_crops_are_centred_and_edge_padded(field, tmp_path):
    root, arr = field
    m, n = point_crops(root / "cells.csv", "type", 4, tmp_path / "crops", exclude=("drop",))
    assert n == 3
    rows = _rows(m)
    assert [r["field"] for r in rows] == ["images/a.png", "images/a.png", "images/b.png"]
    assert [r["type"] for r in rows] == ["normal", "target", "normal"]
    c0, c1, c2 = (np.asarray(Image.open(r["path"])) for r in rows)
    assert c0.shape == (4, 4, 3)
    # centre pixel (2, 2) is the point; rows/columns before the border repeat the edge
    assert tuple(c0[2, 2]) == (0, 0, 7) and tuple(c0[0, 0]) == (0, 0, 7) and tuple(c0[3, 3]) == (1, 1, 7)
    assert tuple(c1[2, 2]) == (5, 10, 7) and tuple(c1[0, 0]) == (3, 8, 7) and tuple(c1[3, 3]) == (6, 11, 7)
    assert tuple(c2[2, 2]) == (9, 19, 7) and tuple(c2[3, 3]) == (9, 19, 7) and tuple(c2[0, 0]) == (7, 17, 7)


def test_point_crops_keep_one_part_and_reuse_crops(field, tmp_path):
    root, _ = field
    split = {"images/a.png": "pretrain", "images/b.png": "eval"}
    m, n = point_crops(root / "cells.csv", "type", 4, tmp_path / "crops", split, "eval")
    assert n == 2 and {r["field"] for r in _rows(m)} == {"images/b.png"}
    first = {r["path"]: (tmp_path / "crops" / r["path"]).stat().st_mtime_ns for r in _rows(m)}
    point_crops(root / "cells.csv", "type", 4, tmp_path / "crops", split, "eval")
    assert {p: (tmp_path / "crops" / p).stat().st_mtime_ns for p in first} == first
    with pytest.raises(ValueError, match="not in the split file"):
        point_crops(root / "cells.csv", "type", 4, tmp_path / "c2", {"images/b.png": "eval"}, "eval")


def test_reused_crops_stay_with_their_points_when_the_rows_change(field, tmp_path):
    root, _ = field
    point_crops(root / "cells.csv", "type", 4, tmp_path / "crops")  # every row, "drop" included
    m, _ = point_crops(root / "cells.csv", "type", 4, tmp_path / "crops", exclude=("normal",))
    for r in _rows(m):  # each reused crop is centred on its own row's point
        assert tuple(np.asarray(Image.open(r["path"]))[2, 2][:2]) == (int(r["y"]), int(r["x"]))


def test_an_unreadable_field_is_named(field, tmp_path):
    root, _ = field
    (root / "images" / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"a\.png: cannot read the image of 2 annotated point"):
        point_crops(root / "cells.csv", "type", 4, tmp_path / "crops")


def test_part_manifest_keeps_the_part_with_absolute_paths_and_refuses_unknown_images(field, tmp_path):
    root, _ = field
    (root / "manifest.csv").write_text("image,label\nimages/a.png,x\nimages/b.png,y\n")
    m, n = part_manifest(root / "manifest.csv", {"images/a.png": "eval", "images/b.png": "pretrain"}, "eval",
                         tmp_path / "out" / "manifest.csv")
    assert n == 1 and _rows(m) == [{"image": str((root / "images" / "a.png").resolve()), "label": "x"}]
    with pytest.raises(ValueError, match="manifest.csv: 1 image"):
        part_manifest(root / "manifest.csv", {"images/a.png": "eval"}, "eval",
                      tmp_path / "o2" / "manifest.csv")


def test_shipped_split_is_read_by_name_and_a_task_reads_its_eval_part(tmp_path):
    herlev = load_split_map("cytofm:herlev", tmp_path)
    assert set(herlev.values()) == {"pretrain", "eval"}
    (tmp_path / "split.csv").write_text("image,part\nimages/a.png,eval\n")
    assert load_split_map("split.csv", tmp_path) == {"images/a.png": "eval"}
    (tmp_path / "bad.csv").write_text("image,which\nimages/a.png,eval\n")
    with pytest.raises(ValueError, match="image, part"):
        load_split_map("bad.csv", tmp_path)


def test_task_input_writes_the_eval_part_manifest(field, tmp_path):
    root, _ = field
    (root / "manifest.csv").write_text("image,label\nimages/a.png,x\nimages/b.png,y\n")
    (root / "split.csv").write_text("image,part\nimages/a.png,pretrain\nimages/b.png,eval\n")
    task = TaskConfig(name="t", data="manifest.csv", label="label", split="split.csv")
    m = _task_input(task, root / "manifest.csv", root, tmp_path / "out", log=lambda s: None)
    assert [r["label"] for r in _rows(m)] == ["y"]
    cells = TaskConfig(name="c", data="manifest.csv", label="type", split="split.csv", points="cells.csv",
                       crop_size=8)
    m = _task_input(cells, root / "manifest.csv", root, tmp_path / "out", log=lambda s: None)
    assert [r["type"] for r in _rows(m)] == ["normal", "drop"]


def test_pretraining_guard_checks_the_field_a_crop_was_cut_from(field, tmp_path):
    """An encoder pretrained on a field has seen its cells, although no crop's bytes were in its pool."""
    from cytofm.data.provenance.hashing import hash_image
    from cytofm.eval.benchmark import _source_hashes
    from cytofm.eval.pretraining_guard import seen_in_pretraining
    from cytofm.utils.io import write_csv

    root, _ = field
    # field b differs from a, so that the guard can tell them apart
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 20, 3)).astype(np.uint8)).save(
        root / "images" / "b.png")
    m, _ = point_crops(root / "cells.csv", "type", 4, tmp_path / "crops", exclude=("drop",))
    rows = _rows(m)
    assert ([r["source_image"] for r in rows]
            == [str((root / "images" / f).resolve()) for f in ("a.png", "a.png", "b.png")])
    store = tmp_path / "store"
    store.mkdir()
    ids = [f"c{k}" for k in range(3)]
    write_csv(store / "manifest.csv", [dict(r, id=i) for i, r in zip(ids, rows, strict=True)])
    crops = [hash_image(r["path"]) for r in rows]
    guard = _source_hashes(store, ids, crops)
    record = [{"sha256": hash_image(root / "images" / "a.png").sha256,
               "phash": hash_image(root / "images" / "a.png").phash}]
    assert seen_in_pretraining(guard, record).tolist() == [True, True, False]
    # what the crops alone would say
    assert seen_in_pretraining(crops, record).tolist() == [False, False, False]
    # items with no image of their own (detected cells) are checked by their fields too
    assert seen_in_pretraining(_source_hashes(store, ids, None), record).tolist() == [True, True, False]
    write_csv(store / "manifest.csv",
              [dict(r, id=i, source_image="") for i, r in zip(ids, rows, strict=True)])
    assert _source_hashes(store, ids, None) is None  # no source and no hash: no check possible
