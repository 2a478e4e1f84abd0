"""Near-duplicates: a re-encoded, brightness-shifted copy is found, distinct images are not, groups merge."""

import numpy as np
from PIL import Image

from cytofm.data.provenance.duplicates import Pair, merge_groups, near_duplicate_pairs
from cytofm.data.provenance.hashing import hash_image


def test_copies_found_and_distinct_images_not(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):
        im = np.kron(rng.integers(40, 215, (6, 6, 3)), np.ones((10, 10, 1))).astype(np.uint8)
        Image.fromarray(im).save(tmp_path / f"{k}.png")
        paths.append(tmp_path / f"{k}.png")
    base = np.asarray(Image.open(paths[2]))
    Image.fromarray(np.clip(base.astype(int) + 12, 0, 255).astype(np.uint8)).save(
        tmp_path / "copy.jpg", quality=85)
    paths.append(tmp_path / "copy.jpg")
    pairs = near_duplicate_pairs([hash_image(p) for p in paths])
    assert [(p.i, p.j) for p in pairs] == [(2, 6)]
    assert pairs[0].mad > 6  # brightness moved every pixel by 12: found by pHash, not by the thumbnail


def test_merge_groups_joins_group_column_and_pairs():
    groups = np.array(["a", "a", "b", "c", "c", "d"])
    out = merge_groups(6, [Pair(0, 3, 2, 1.0), Pair(4, 5, 2, 1.0)], groups)
    assert out.tolist() == [0, 0, 2, 0, 0, 0]
    assert merge_groups(3, [Pair(1, 2, 0, 0.0)]).tolist() == [0, 1, 1]
