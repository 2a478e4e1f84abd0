"""Where a pretraining iteration's time goes with views made on the device: loader, views, model step.

    python benchmarks/pretrain_step_breakdown.py FOLDER [FOLDER ...] [--preset shipped] [--batch 128] \\
        [--iters 20]

In one process, on the training device: (1) the loader alone (uint8 batches and masks from the decoded pool,
``data.num_workers`` processes), (2) the views alone (crops, colour, blur on the device), (3) the model step
alone on those views, (4) the three together as the trainer runs them. Each is per iteration, after
warm-up, with the device synchronised around the timed region; the sum of (2) and (3) against (4) says
whether the loader is hidden. On a GPU it then counts the host's waits for the device in two more
iterations of views + step (``torch.cuda.set_sync_debug_mode``; expected: none, tests/ssl/test_host_sync.py).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import torch

from cytofm.config.loader import build_config
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.trainer import SSLTrainer


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+")
    ap.add_argument("--preset", default="shipped")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("overrides", nargs="*", default=[])
    a = ap.parse_args()
    ov = [f"train.batch_size={a.batch}", "train.iterations=100000", "optim.warmup_iters=10",
          "data.views=device"]
    if a.workers is not None:
        ov.append(f"data.num_workers={a.workers}")
    cfg = build_config(PretrainConfig, "pretrain", a.preset, ov + a.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tr = SSLTrainer(cfg, a.data, f"{tmp}/run", log=print)
        dev, ds, n, w = tr.device, tr.dataset, a.iters, 3
        ds.views_in_loader = False  # time the views apart, also on a CPU
        loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=range(w + n),
                                             num_workers=cfg.data.num_workers,
                                             prefetch_factor=2 if cfg.data.num_workers else None,
                                             pin_memory=dev.type == "cuda")  # as the trainer's loader
        raws, t = [], None
        for i, raw in enumerate(loader):
            if i == w:
                t = time.perf_counter()
            raws.append(raw)
        t_load = (time.perf_counter() - t) / n
        views = []
        for i, raw in enumerate(raws):
            if i == w:
                sync(dev)
                t = time.perf_counter()
            views.append(ds.views(raw, dev))
        sync(dev)
        t_views = (time.perf_counter() - t) / n
        for i, v in enumerate(views):
            if i == w:
                sync(dev)
                t = time.perf_counter()
            tr.step(v, 10 + i, sync=False)
        tr.checked()
        sync(dev)
        t_step = (time.perf_counter() - t) / n
        del views
        sync(dev)
        for i, raw in enumerate(itertools.islice(loader, w + n)):
            if i == w:
                sync(dev)
                t = time.perf_counter()
            tr.step(ds.views(raw, dev), 100 + i, sync=False)
        tr.checked()
        sync(dev)
        t_all = (time.perf_counter() - t) / n
        b = cfg.train.batch_size
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        print(f"{name}, {cfg.model.arch}, batch {b}, {cfg.data.num_workers} loader processes, per iteration:")
        for k, v in (("loader alone", t_load), ("views alone", t_views), ("model step alone", t_step),
                     ("all together", t_all)):
            print(f"  {k:17s} {v * 1000:8.1f} ms = {b / v:7.1f} img/s")
        if dev.type == "cuda":
            import warnings

            raw = next(iter(loader))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                for i in range(2):
                    tr.step(ds.views(raw, dev), 200 + i, sync=False)
                torch.cuda.set_sync_debug_mode("default")
            waits = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
            print(f"  host waits for the device in 2 iterations of views + step: {len(waits)}")
            for m in sorted(set(waits))[:5]:
                print(f"    {m}")


if __name__ == "__main__":
    main()
