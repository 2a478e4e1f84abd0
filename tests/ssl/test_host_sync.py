"""A pretraining step never makes the host wait for the device.

On a GPU every ``item()``, ``nonzero``, ``bincount`` or other read of device data back to the host stalls
the Python thread until the device has drained its queue; the device then idles while Python launches the
next kernels. The GPU run of the shipped encoder spent 23% of an iteration on views made with such waits
(README, "pretraining on one GPU"). Here the ops that wait are caught on the CPU with a dispatch mode, in
the views and in the step up to the optimiser (AdamW keeps its step counts on the host, so its reads are
not waits). Blocking copies of host constants to the device cannot be seen on a CPU; the views copy their
constants once per device (``device_views._const``), and the trainer moves batches with ``non_blocking``
from page-locked memory.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from cytofm.ssl import device_views
from cytofm.ssl.trainer import SSLTrainer

from tests.ssl.test_dinov2 import DINOV2
from tests.ssl.test_training import images, tiny_cfg  # noqa: F401 - fixture

aten = torch.ops.aten
WAITS = {aten._local_scalar_dense, aten.nonzero, aten.bincount, aten.masked_select, aten._unique2,
         aten.unique_dim, aten.unique_consecutive, aten._linalg_check_errors, aten.is_nonzero}


class HostWaits(TorchDispatchMode):
    """Records every op that would read device data back to the host."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in WAITS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _trainer(images, tmp_path, *extra):  # noqa: F811
    cfg = tiny_cfg("data.views=device", "train.iterations=4", "crops.hed_jitter=0.5", "crops.solarize=0.5",
                   "crops.rotate90=true", *extra)
    tr = SSLTrainer(cfg, [str(images)], tmp_path / "run", log=lambda m: None)
    step = tr.optimizer.step

    def unwatched(*a, **k):
        with _disable_current_modes():
            return step(*a, **k)

    tr.optimizer.step = unwatched
    return tr


@pytest.mark.parametrize("extra", [(), ("loss.koleo_weight=0.1",), ("loss.centering=sinkhorn_knopp",), DINOV2],
                         ids=["ibot", "ibot+koleo", "ibot+sk", "dinov2"])
def test_views_and_step_never_wait_for_the_device(images, tmp_path, monkeypatch, extra):  # noqa: F811
    monkeypatch.setattr(device_views, "DENSE_SUBSETS", True)  # what a GPU runs
    tr = _trainer(images, tmp_path, *extra)
    raw = tr.dataset[1]  # the loader's part, on the host (masks and their index included)
    assert "mask_index" in raw
    with HostWaits() as watch:
        batch = tr.dataset.views(raw, tr.device)
        m = tr.step(batch, 1, sync=False)
    assert watch.seen == []
    assert torch.isfinite(m["loss"])


def test_the_watch_sees_the_waits_it_is_there_for(images, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(device_views, "DENSE_SUBSETS", False)  # the CPU's subset path finds views with nonzero
    tr = _trainer(images, tmp_path)
    raw = tr.dataset[1]
    raw.pop("mask_index")  # the step would find the masked tokens itself
    with HostWaits() as watch:
        batch = tr.dataset.views(raw, tr.device)
        tr.step(batch, 1, sync=False)
        torch.tensor([1.0, 2.0]).sum().item()
    assert "aten.nonzero.default" in watch.seen and "aten._local_scalar_dense.default" in watch.seen
