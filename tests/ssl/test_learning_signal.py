"""Slow tier: each CPU preset, pretrained for at most ~15 minutes on the PRETRAINING parts of the shipped
split of ../shared/data (BCCD fields, Herlev cells, CRIC), gives Herlev 7-class linear-probe features on
the EVALUATION part (cells no run has seen) better than the same architecture at random init, probed on
the same folds: DINOv2 (`cpu_dinov2`); iBOT (`cpu`, the same run with iBOT's objective) is run and reported
but expected to miss the margin (see IBOT_GAP)."""

import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


IBOT_GAP = ("on cells no run has seen, the iBOT cpu preset's margin over random init is within noise: +0.002 "
            "(seed 0) and +0.022 (seed 1), paired over 15 folds; DINOv2 on the same run: +0.042 and +0.087 "
            "(docs/dinov2_reference.md). Open in the views/split/scale issue.")


@pytest.mark.parametrize("preset", [pytest.param("cpu", marks=pytest.mark.xfail(reason=IBOT_GAP, strict=False)),
                                    "cpu_dinov2"])
def test_cpu_preset_beats_random_init_on_unseen_herlev_cells(preset, tmp_path):
    from ssl_learning_signal import compare, eval_manifest, pretrain, report

    shared = shared_data("herlev").parent
    for name in ("bccd", "cric"):
        shared_data(name)
    run = pretrain(preset, shared, tmp_path, ["train.max_minutes=15"])
    r = compare(run, eval_manifest(shared, tmp_path))
    print("\n" + report(preset, r))
    d = r["pretrained"] - r["random"]
    assert d.mean() > 0.02  # mean paired difference over 5 folds x 3 fold seeds
