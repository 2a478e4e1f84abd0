"""Near-duplicates are looked for between plain images only: a store whose sources include whole slides or
tar shards (most MIL stores) gets one quiet note for those, not a warning that a source could not be read,
and its images are still checked."""

import numpy as np
from PIL import Image

from cytofm.eval.evaluate_store import near_duplicate_groups
from cytofm.eval.labelled_set import LabelledSet


def test_slides_and_shards_are_noted_and_images_still_grouped(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)).save(tmp_path / "a_bright.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    for name in ("s1.svs", "s2.ndpi", "shard.tar"):  # not decodable as one picture (here: not at all)
        (tmp_path / name).write_bytes(b"not an image")
    names = ["a.png", "s1.svs", "a_bright.png", "shard.tar", "b.png", "s2.ndpi"]
    data = LabelledSet([n.split(".")[0] for n in names], [np.zeros((1, 2), np.float32)] * 6,
                       np.array([0, 1, 0, 1, 0, 1]), ["x", "y"], None, None, 0,
                       [str(tmp_path / n) for n in names])
    logs, warns = [], []
    groups, merged = near_duplicate_groups(data, tmp_path / "out", log=logs.append, warn=warns.append)
    assert warns == []
    assert logs == ["near-duplicates are checked between plain images only; 2 whole slide(s), "
                    "1 tar shard(s) not checked",
                    "1 near-duplicate pair(s) over 2 items kept on one side of every split (duplicates.csv)"]
    assert merged and groups.tolist() == [0, 1, 0, 3, 4, 5]  # a.png (item 0) with a_bright.png (item 2)
    rows = (tmp_path / "out" / "duplicates.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["a", "a_bright"]]
