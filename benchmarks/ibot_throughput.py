"""iBOT training throughput (images/s) and achieved FLOP/s against the bf16 matmul peak of this machine.

Usage: python benchmarks/ibot_throughput.py [--archs vit_small_patch16_224,vit_base_patch16_224] [--batch 8] [--steps 3]

The reference crop set-up (2x224 + 10x96, K=8192 prototypes, bf16 autocast). Batches are synthetic
tensors so only the model step is timed; FLOPs of one step come from torch's FlopCounterMode.
Start it with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736
(see shared/notes/cpu-performance.md) to keep large allocations off the mmap path.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cytofm.config.loader import build_config
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.trainer import IBOTTrainer


def matmul_peak(n: int = 4096, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def synthetic_batch(cfg: PretrainConfig, g: int) -> dict:
    b = cfg.train.batch_size
    crops = [torch.randn(b, 3, cfg.crops.global_size, cfg.crops.global_size) for _ in range(2)]
    crops += [torch.randn(b, 3, cfg.crops.local_size, cfg.crops.local_size) for _ in range(cfg.crops.n_local)]
    masks = torch.rand(2, b, g, g) < 0.15
    return {"crops": crops, "masks": masks, "iteration": 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="vit_small_patch16_224,vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--data", default=None, help="any image folder (only used to build the trainer)")
    a = ap.parse_args()
    peak = matmul_peak()
    print(f"bf16 matmul peak (4096^3, this run): {peak / 1e9:.0f} GFLOP/s")
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        data = a.data or tmp
        if a.data is None:
            Image.new("RGB", (256, 256), (200, 150, 180)).save(f"{tmp}/x.png")
        for arch in a.archs.split(","):
            cfg = build_config(PretrainConfig, "pretrain", "vit_small", [
                f"model.arch={arch}", f"train.batch_size={a.batch}", "runtime.precision=bf16", "data.num_workers=0",
                "train.iterations=100000", "optim.warmup_iters=0"])
            tr = IBOTTrainer(cfg, [data], f"{tmp}/run-{arch}", log=lambda m: None)
            batch = synthetic_batch(cfg, cfg.crops.global_size // tr.student.backbone.patch_size)
            tr.step(batch, 10)  # warm-up
            with FlopCounterMode(display=False) as fc:
                tr.step(batch, 11)
            flops = fc.get_total_flops()
            t = time.perf_counter()
            for i in range(a.steps):
                tr.step(batch, 12 + i)
            dt = (time.perf_counter() - t) / a.steps
            print(f"{arch}: {dt:.2f} s/step, {a.batch / dt:.2f} img/s, {flops / 1e9:.0f} GFLOP/step, "
                  f"{flops / dt / 1e9:.0f} GFLOP/s = {flops / dt / peak:.0%} of the bf16 peak")


if __name__ == "__main__":
    main()
