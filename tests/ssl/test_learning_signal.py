"""Slow tier: each CPU preset, pretrained for at most ~15 minutes on the PRETRAINING parts of the shipped
split of ../shared/data (BCCD fields, Herlev cells, CRIC), against the same architecture at random init on
the same Herlev 7-class linear-probe folds.

- DINOv2 (`cpu_dinov2`): better features on the EVALUATION part (cells no run has seen).
- iBOT with KoLeo (`cpu` + `loss.koleo_weight=0.1`): likewise; KoLeo is what carried the margin on unseen
  cells in the seed study (docs/dinov2_reference.md).
- iBOT (`cpu`, the same run with iBOT's objective): on unseen cells its margin is within noise (+0.002 and
  +0.022 for pretraining seeds 0 and 1; docs/dinov2_reference.md, "What carries the CPU signal"), so
  the test asserts only that it learns the cells it was shown (Herlev's pretraining part: +0.019 and
  +0.030; a collapsed or untrained run sits at or below 0) and prints the unseen-cell margin. Neither
  number is a transfer claim for iBOT.
"""

import sys
from pathlib import Path

import pytest

from tests.helpers import shared_data

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _pretrain(preset, tmp_path, *overrides):
    from ssl_learning_signal import pretrain

    shared = shared_data("herlev").parent
    for name in ("bccd", "cric"):
        shared_data(name)
    return shared, pretrain(preset, shared, tmp_path, ["train.max_minutes=15", *overrides])


def test_cpu_dinov2_beats_random_init_on_unseen_herlev_cells(tmp_path):
    from ssl_learning_signal import compare, eval_manifest, report

    shared, run = _pretrain("cpu_dinov2", tmp_path)
    r = compare(run, eval_manifest(shared, tmp_path))
    print("\nunseen cells: " + report("cpu_dinov2", r))
    assert (r["pretrained"] - r["random"]).mean() > 0.02  # mean paired difference over 5 folds x 3 fold seeds


def test_cpu_ibot_with_koleo_beats_random_init_on_unseen_herlev_cells(tmp_path):
    from ssl_learning_signal import compare, eval_manifest, report

    shared, run = _pretrain("cpu", tmp_path, "loss.koleo_weight=0.1")
    r = compare(run, eval_manifest(shared, tmp_path))
    print("\nunseen cells: " + report("cpu + KoLeo", r))
    assert (r["pretrained"] - r["random"]).mean() > 0.02


def test_cpu_ibot_learns_the_herlev_cells_it_was_shown(tmp_path):
    from ssl_learning_signal import compare, eval_manifest, report

    shared, run = _pretrain("cpu", tmp_path)
    seen = compare(run, eval_manifest(shared, tmp_path, "pretrain"))
    unseen = compare(run, eval_manifest(shared, tmp_path, "eval"))
    print("\nseen cells (pretraining part): " + report("cpu", seen))
    print("unseen cells (evaluation part; known gap, not asserted): " + report("cpu", unseen))
    assert (seen["pretrained"] - seen["random"]).mean() > 0.01
