"""Pretraining views: the device pipeline against the PIL pipeline, in one run, on real cytology.

Complete view sets (2 global + N local crops at a preset's sizes, with block masks) per second, from a
pool of BCCD blood-smear fields and Herlev Pap cells (../shared/data), made in this process with the
same torch threads; then the `cpu` preset's training step with real data (views made on the device) next
to the same step on ready-made synthetic tensors.

    python benchmarks/view_throughput.py [--batches 6] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from cytofm.config.loader import build_config
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.ssl.device_views import DeviceBatches

DATA = Path(os.environ.get("CYTOFM_SHARED_DATA",
                           Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def pool() -> list[str]:
    srcs = [DATA / "bccd" / "manifest.csv", DATA / "herlev" / "manifest.csv"]
    missing = [str(s) for s in srcs if not s.is_file()]
    if missing:
        sys.exit(f"real data not found ({', '.join(missing)}); "
                 "set CYTOFM_SHARED_DATA to the shared/data folder")
    return [str(s) for s in srcs]


def views_per_second(preset: str, batch: int, n: int, sources: list[str]) -> tuple[float, float]:
    cfg = build_config(PretrainConfig, "pretrain", preset,
                       [f"train.batch_size={batch}", "train.iterations=1000"])
    b = PretrainingBatches([load_table(s) for s in sources], cfg, 0, 16)
    t = time.perf_counter()
    d = DeviceBatches.of(b)
    print(f"  cache built in {time.perf_counter() - t:.1f} s (once per run)")
    cpu = torch.device("cpu")
    b[0], d.views(d[0], cpu)  # warm-up
    t = time.perf_counter()
    for it in range(1, n + 1):
        b[it]
    pil = n * batch / (time.perf_counter() - t)
    t = time.perf_counter()
    for it in range(1, n + 1):
        d.views(d[it], cpu)
    dev = n * batch / (time.perf_counter() - t)
    return pil, dev


def step_times(steps: int, sources: list[str]) -> tuple[float, float]:
    """Median seconds per iteration of the `cpu` preset as it trains (its loader process, views made on
    the CPU, overlapped with the step) and of the same step on ready-made synthetic tensors."""
    import statistics
    import tempfile

    from cytofm.ssl.trainer import SSLTrainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(PretrainConfig, "pretrain", "cpu",
                           ["data.views=device", f"train.iterations={steps + 3}", "train.save_every=100000"])
        tr = SSLTrainer(cfg, sources, f"{tmp}/run", log=lambda m: None)
        stamps, real_step = [], tr.step

        def timed(batch, it, **kw):  # synchronous (the default), so the stamps time whole steps
            out = real_step(batch, it)
            stamps.append(time.perf_counter())
            return out

        tr.step = timed
        tr.run()
        real = statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:], strict=False))
        raw = tr.dataset[0]
        synthetic = {"crops": [torch.randn_like(c) for c in raw["crops"]], "masks": raw["masks"]}
        times = []
        for i in range(steps):
            t = time.perf_counter()
            real_step(synthetic, 300 + i)
            times.append(time.perf_counter() - t)
    return statistics.median(times), real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    sources = pool()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pool: BCCD fields + Herlev cells")
    for preset, batch in (("cpu", 32), ("vit_small", 16)):
        pil, dev = views_per_second(preset, batch, a.batches, sources)
        print(f"{preset}: PIL {pil:.1f} view sets/s, device {dev:.1f} view sets/s: {dev / pil:.2f}x")
    syn, real = step_times(a.steps, sources)
    print(f"cpu preset iteration (batch 32, median): synthetic tensors {syn:.2f} s, "
          f"training on real data with device views {real:.2f} s ({real / syn - 1:+.0%})")


if __name__ == "__main__":
    main()
