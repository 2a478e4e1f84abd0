"""A pretraining step never makes the host wait for the device.

On a GPU every ``item()``, ``nonzero``, ``bincount`` or other read of device data back to the host stalls
the Python thread until the device has drained its queue; the device then idles while Python launches the
next kernels. The GPU run of the shipped encoder spent 23% of an iteration on views made with such waits
(docs/benchmarks/pretraining_gpu.md). Here the ops that wait are caught on the CPU with a dispatch mode, in
the views and in the step up to the optimiser (AdamW keeps its step counts on the host, so its reads are
not waits). Blocking copies from the host to a GPU are caught on fake CUDA tensors (``FakeTensorMode``:
shapes and devices without a GPU) in the views and the methods' forward passes and losses, with the
multi-process branches switched on.
"""

import contextlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from cytofm.ssl import blur, device_views
from cytofm.ssl.masking import masked_positions
from cytofm.ssl.methods import Views, build_method
from cytofm.ssl.trainer import SSLTrainer

from tests.helpers import DINOV2, tiny_cfg

aten = torch.ops.aten
WAITS = {aten._local_scalar_dense, aten.nonzero, aten.bincount, aten.masked_select, aten._unique2,
         aten.unique_dim, aten.unique_consecutive, aten._linalg_check_errors, aten.is_nonzero, aten.equal}
# with a bool index: a nonzero
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class HostWaits(TorchDispatchMode):
    """Records every op that would read device data back to the host."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in WAITS or (func.overloadpacket is aten.repeat_interleave
                                            and "output_size" not in (kwargs or {})):
            self.seen.append(str(func))
        elif func.overloadpacket in INDEXING and any(i is not None and i.dtype == torch.bool
                                                     for i in args[1]):
            self.seen.append(f"{func} with a bool index")
        return func(*args, **(kwargs or {}))


class BlockingCopies(TorchDispatchMode):
    """Records every copy from the host to a GPU that is not ``non_blocking`` (the host waits for it)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._to_copy.default:
            dev = kwargs.get("device")
            if (args[0].device.type == "cpu" and dev is not None and torch.device(dev).type == "cuda"
                    and not kwargs.get("non_blocking")):
                self.seen.append(f"to(cuda) of a host tensor {tuple(args[0].shape)}")
        elif func is aten.copy_.default:
            blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
            if args[1].device.type == "cpu" and args[0].device.type == "cuda" and blocking:
                self.seen.append(f"copy_ of a host tensor {tuple(args[1].shape)} into a GPU tensor")
        return func(*args, **kwargs)


def _trainer(images, tmp_path, *extra):
    cfg = tiny_cfg("data.views=device", "train.iterations=4", "crops.hed_jitter=0.5", "crops.solarize=0.5",
                   "crops.rotate90=true", *extra)
    tr = SSLTrainer(cfg, [str(images)], tmp_path / "run", log=lambda m: None)
    step = tr.optimizer.step

    def unwatched(*a, **k):
        with _disable_current_modes():
            return step(*a, **k)

    tr.optimizer.step = unwatched
    return tr


@pytest.mark.parametrize("extra",
                         [(), ("loss.koleo_weight=0.1",), ("loss.centering=sinkhorn_knopp",), DINOV2],
                         ids=["ibot", "ibot+koleo", "ibot+sk", "dinov2"])
def test_views_and_step_never_wait_for_the_device(images, tmp_path, monkeypatch, extra):
    monkeypatch.setattr(device_views, "DENSE_SUBSETS", True)  # what a GPU runs
    tr = _trainer(images, tmp_path, *extra)
    raw = tr.dataset[1]  # the loader's part, on the host (masks and their index included)
    assert "mask_index" in raw
    with HostWaits() as watch:
        batch = tr.dataset.views(raw, tr.device)
        m = tr.step(batch, 1, sync=False)
    assert watch.seen == []
    assert torch.isfinite(m["loss"])


def test_the_watch_sees_the_waits_it_is_there_for(images, tmp_path, monkeypatch):
    # the CPU's subset path finds views with nonzero
    monkeypatch.setattr(device_views, "DENSE_SUBSETS", False)
    tr = _trainer(images, tmp_path)
    raw = tr.dataset[1]
    raw.pop("mask_index")  # the step would find the masked tokens itself
    with HostWaits() as watch:
        batch = tr.dataset.views(raw, tr.device)
        tr.step(batch, 1, sync=False)
        torch.tensor([1.0, 2.0]).sum().item()
    assert "aten.nonzero.default" in watch.seen and "aten._local_scalar_dense.default" in watch.seen


@pytest.fixture
def fake_cuda(monkeypatch):
    """A mode for fake CUDA tensors, with the multi-process branches on (all_reduce does nothing with one
    process)."""
    if not torch.backends.cuda.is_built():
        pytest.skip("this PyTorch build has no CUDA: fake CUDA tensors need one")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, *a, **k: None)
    for module, cache in ((device_views, "_ON_DEVICE"), (blur, "_BLUR_BASIS"), (blur, "_PRODUCT_DTYPE")):
        monkeypatch.setattr(module, cache, {})  # fake tensors must not stay in them
    return FakeTensorMode(allow_non_fake_inputs=True)


def test_views_never_copy_to_a_gpu_blocking(fake_cuda):
    crop = device_views.DeviceMultiCrop(tiny_cfg("crops.hed_jitter=0.5", "crops.solarize=0.5").crops)
    sizes = torch.tensor([[40, 56], [33, 50], [40, 20], [12, 56]])
    with fake_cuda:
        pixels = torch.empty(4, 3, 40, 56, dtype=torch.uint8, device="cuda")
        crop(pixels, sizes, torch.Generator().manual_seed(0))  # the first call copies its constants, once
        with BlockingCopies() as watch:
            views = crop(pixels, sizes, torch.Generator().manual_seed(1))
    assert views[0].device.type == "cuda" and watch.seen == []


@pytest.mark.parametrize("extra", [(), ("loss.koleo_weight=0.1",), ("loss.centering=sinkhorn_knopp",), DINOV2,
                                   (*DINOV2, "loss.centering=ema")],
                         ids=["ibot", "ibot+koleo", "ibot+sk", "dinov2", "dinov2+ema"])
def test_forward_and_loss_never_copy_to_a_gpu_blocking(fake_cuda, extra):
    method = build_method(tiny_cfg(*extra))
    B = 4
    masks = torch.rand(2, B, 2, 2, generator=torch.Generator().manual_seed(0)) < 0.4
    index = masked_positions(masks)  # on the host, as the loaders make it
    with fake_cuda:
        for net in (method.student, method.teacher, method.criterion):
            net.to("cuda")
        index = index.to("cuda", non_blocking=True)
        views = Views(torch.empty(2 * B, 3, 32, 32, device="cuda"),
                      masks.to("cuda", non_blocking=True).reshape(2 * B, 2, 2),
                      torch.empty(2 * B, 3, 16, 16, device="cuda"), B, (index[:, 0], index[:, 1]))
        with BlockingCopies() as copies, HostWaits() as waits:
            out = method.losses(method.student, views, {"teacher_temp": 0.04, "teacher_patch_temp": 0.04},
                                contextlib.nullcontext())
    assert out["loss"].device.type == "cuda"
    assert copies.seen == [] and waits.seen == []


def test_the_copy_watch_sees_blocking_copies(fake_cuda):
    with fake_cuda:
        counts = torch.empty(2, device="cuda")
        with BlockingCopies() as watch:
            counts[0] = 3  # an element set from a host number
            torch.tensor([1.0, 2.0]).to("cuda")
            torch.ones(2).to("cuda", non_blocking=True)  # not a wait
    assert len(watch.seen) == 2, watch.seen
