"""Foreground finding on real Giemsa smear fields (BCCD), scored against the annotated boxes."""

import h5py
import numpy as np

from cytofm.data.annotations.regions import coverage_of_boxes, read_voc_boxes
from cytofm.data.prepare.foreground import box_fractions
from cytofm.data.prepare.run import run_prepare
from cytofm.data.prepare.tiling import grid_coords

from tests.helpers import prepare_cfg as cfg
from tests.helpers import shared_data


def score_bccd(out, root):
    """WBC box area covered by kept patches; share of annotation-free patches that were dropped."""
    import csv

    covered = total = free = free_dropped = n_all = n_kept = 0
    for r in csv.DictReader(open(out / "manifest.csv")):
        with h5py.File(out / r["coords"]) as f:
            kept = f["coords"][:]
        size, w, h = int(r["patch_size_level0"]), int(r["width"]), int(r["height"])
        objs = read_voc_boxes(root / r["annotation"])
        c, t = coverage_of_boxes(kept, size, [b for n, b in objs if n == "WBC"], (h, w))
        covered, total = covered + c, total + t
        grid = grid_coords(w, h, size, size)
        anyobj = np.zeros((h, w), bool)
        for _, b in objs:
            x0, y0, x1, y1 = (int(v) for v in b)
            anyobj[y0:y1, x0:x1] = True
        is_free = box_fractions(anyobj, np.concatenate([grid, grid + size], 1)) == 0
        kept_set = {tuple(xy) for xy in kept.tolist()}
        was_kept = np.array([tuple(xy) in kept_set for xy in grid.tolist()])
        free += int(is_free.sum())
        free_dropped += int((is_free & ~was_kept).sum())
        n_all += len(grid)
        n_kept += int(was_kept.sum())
    return covered / total, free_dropped / max(free, 1), 1 - n_kept / n_all, free


def test_bccd_white_cells_kept_background_dropped(tmp_path):
    root = shared_data("bccd")
    out = tmp_path / "bccd"
    run_prepare([str(root / "manifest.csv")], out,
                cfg("tiling.patch_size=96", "output.qa_thumbnails=0", "output.workers=2"), log=lambda m: None)
    wbc_cover, free_dropped, all_dropped, n_free = score_bccd(out, root)
    print(f"\nBCCD (364 fields, 96 px patches): WBC box area covered by kept patches {wbc_cover:.1%}; "
          f"annotation-free patches dropped {free_dropped:.1%} of {n_free}; "
          f"all patches dropped {all_dropped:.1%}")
    assert wbc_cover >= 0.95
    # BCCD annotates only some red cells, so 'annotation-free' patches often hold real cells; the
    # dropped share is far above the share of all patches dropped: background is what gets removed.
    assert free_dropped > 2 * all_dropped
