"""Files cytofm writes for others to read get the user's umask, as any tool's plain open would."""

import os
import stat

import pytest
import torch

from cytofm.ssl.checkpoint import export_backbone
from cytofm.utils.io import with_user_mode


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_exported_weights_follow_the_umask(tmp_path, umask_022):
    st, js = export_backbone({"w": torch.zeros(2)}, "vit_tiny_patch16_224", {}, tmp_path / "m.safetensors")
    assert stat.S_IMODE(st.stat().st_mode) == 0o644 and stat.S_IMODE(js.stat().st_mode) == 0o644


def test_user_mode_by_hand(tmp_path):
    p = tmp_path / "f"
    p.write_text("x")
    os.chmod(p, 0o600)
    old = os.umask(0o027)
    try:
        with_user_mode(p)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
