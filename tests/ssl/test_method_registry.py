"""A method is its registry line: the config checks it names and the name the log writes come from there,
and both losses are built by keyword from the same config settings."""

from __future__ import annotations

import pytest

from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.method_registry import METHODS

from tests.helpers import DINOV2, tiny_cfg


def test_each_method_names_its_display_name_and_config_check():
    assert {e.name: e.display for e in METHODS.entries()} == {"ibot": "iBOT", "dinov2": "DINOv2"}
    for e in METHODS.entries():
        assert e.settings.startswith("cytofm.ssl.method_settings:")


def test_a_registered_method_brings_its_config_check():
    """Config validation reads the check from the registry line: nothing in the config knows the method."""
    with METHODS.temporarily("ibot-strict", "cytofm.ssl.methods.ibot:IBOTMethod", "iBOT, strict",
                             display="iBOT (strict)", settings="cytofm.ssl.method_settings:ibot_settings"):
        assert PretrainConfig(method="ibot-strict").method == "ibot-strict"
        with pytest.raises(ValueError, match="head.separate: a DINOv2 setting"):
            PretrainConfig(method="ibot-strict", head={"separate": True})


def test_config_validation_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from cytofm.ssl.config import PretrainConfig; "
            "PretrainConfig(method='dinov2', head={'separate': True}); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("extra", [(), tuple(DINOV2)], ids=["ibot", "dinov2"])
def test_losses_take_their_settings_by_keyword_from_the_config(extra):
    from cytofm.ssl.methods import build_method

    cfg = tiny_cfg(*extra, "loss.student_temp=0.2", "loss.center_momentum=0.8", "loss.lambda_cls=0.7",
                   "loss.lambda_patch=0.6", "loss.sinkhorn_iterations=5")
    loss = build_method(cfg).criterion
    lo = cfg.loss
    assert (loss.n_global, loss.student_temp, loss.center_momentum, loss.lambda_cls, loss.lambda_patch,
            loss.centering, loss.sinkhorn_iterations) == (2, 0.2, 0.8, 0.7, 0.6, lo.centering, 5)
    assert loss.center.shape[-1] == loss.center_patch.shape[-1] == cfg.head.out_dim
    if extra:
        assert loss.koleo_weight == lo.koleo_weight == 0.1
