"""Slow tier: each CPU preset, pretrained for at most ~15 minutes on the PRETRAINING parts of the shipped
split of ../shared/data (BCCD fields, Herlev cells, CRIC), gives Herlev 7-class linear-probe features on
the EVALUATION part (cells no run has seen) better than the same architecture at random init, probed on
the same folds: iBOT (`cpu`) and DINOv2 (`cpu_dinov2`, the same run with DINOv2's objective)."""

import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.parametrize("preset", ["cpu", "cpu_dinov2"])
def test_cpu_preset_beats_random_init_on_unseen_herlev_cells(preset, tmp_path):
    from ssl_learning_signal import compare, eval_manifest, pretrain, report

    shared = shared_data("herlev").parent
    for name in ("bccd", "cric"):
        shared_data(name)
    run = pretrain(preset, shared, tmp_path, ["train.max_minutes=15"])
    r = compare(run, eval_manifest(shared, tmp_path))
    print("\n" + report(preset, r))
    d = r["pretrained"] - r["random"]
    assert d.mean() > 0.02 and (d > 0).sum() >= 12  # of 15 paired folds
