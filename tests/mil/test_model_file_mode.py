"""Saved models follow the user's umask like every other file cytofm writes: safetensors creates its files
readable by the owner alone, and a colleague on a shared disk could then not apply the lab's model."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from cytofm.eval.saved_probe import save_probe
from cytofm.mil.config import MILTrainConfig
from cytofm.mil.saved import architecture, build, save_weights


@pytest.fixture
def umask():
    """Set a umask for one test and give the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mil_and_probe_model_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    from cytofm.eval.probe_registry import make_probe

    umask(mask)
    save_weights(build(architecture(MILTrainConfig(), 4, 2)), tmp_path / "models" / "abmil.safetensors")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)).astype(np.float32), np.array([0, 1] * 6)
    save_probe("knn", make_probe("knn", knn_k=3).fit(x, y), tmp_path / "models" / "knn.safetensors")
    for name in ("abmil.safetensors", "knn.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / "models" / name).st_mode) == mode, name
