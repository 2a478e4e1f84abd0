"""Slow tier: the CPU preset, pretrained for at most ~15 minutes on the real images in ../shared/data,
gives Herlev 7-class linear-probe features better than the same architecture at random init."""

import pytest

from cytofm.config.loader import build_config
from cytofm.data.prepare import run_prepare
from cytofm.data.prepare_config import PrepareConfig
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.trainer import IBOTTrainer

from tests.conftest import shared_data

pytestmark = pytest.mark.slow


def test_cpu_preset_beats_random_init_on_herlev(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from ssl_learning_signal import compare

    bccd, herlev, cric = shared_data("bccd"), shared_data("herlev"), shared_data("cric")
    run_prepare([str(bccd / "manifest.csv")], tmp_path / "bccd",
                build_config(PrepareConfig, "prepare", "smear_fields", ["output.qa_thumbnails=0"]), log=lambda m: None)
    run_prepare([str(cric / "manifest.csv")], tmp_path / "cric",
                build_config(PrepareConfig, "prepare", "cells", ["output.qa_thumbnails=0"]), log=lambda m: None)
    cfg = build_config(PretrainConfig, "pretrain", "cpu", ["train.iterations=600", "train.max_minutes=15"])
    IBOTTrainer(cfg, [str(tmp_path / "bccd"), str(herlev / "manifest.csv"), str(tmp_path / "cric")],
                tmp_path / "run", log=print).run()
    r = compare(tmp_path / "run", herlev)
    print(f"\nHerlev 7-class linear probe: pretrained {r['pretrained'][0]:.3f} +- {r['pretrained'][1]:.3f}, "
          f"random init {r['random'][0]:.3f} +- {r['random'][1]:.3f} (iteration {r['iteration'][0]})")
    assert r["pretrained"][0] > r["random"][0] + 0.02
