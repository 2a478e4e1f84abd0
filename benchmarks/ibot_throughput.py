"""iBOT training throughput (images/s) and achieved FLOP/s against the matmul peak of this machine at the
precision cytofm picks (bf16 where the hardware has it, fp32 on a CPU without bf16 units; ``--precision``).

Usage: python benchmarks/ibot_throughput.py [--archs vit_small_patch16_224,vit_base_patch16_224] \\
           [--batch 8] [--steps 3]
       python benchmarks/ibot_throughput.py --device cuda --preset vit_base_paper \\
           --archs vit_base_patch16_224 --batch 128

The crops of ``--preset`` (default ``vit_small``: 2x224 + 10x96, K=8192 prototypes), bf16 autocast.
Batches are synthetic tensors already on the device so only the model step is timed; FLOPs of one step come
from torch's FlopCounterMode, and model FLOP utilisation is those FLOPs per second over the bf16 matmul peak
measured in the same run on the same device (on a GPU also over the datasheet's dense bf16 peak,
``--nominal-tflops``).
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
from cytofm.ssl.trainer import SSLTrainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int = 4096, reps: int = 10, dtype=torch.bfloat16) -> float:
    """FLOP/s of an n^3 matmul in ``dtype``: the reference every share of peak here is measured against."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def precision_of(want: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype cytofm runs at for ``want`` (auto: bf16 where the hardware has it, else fp32), and its
    name."""
    from cytofm.utils.distributed import dtype_name, pick_dtype

    dtype = pick_dtype(want, device)
    return dtype or torch.float32, dtype_name(dtype)


def synthetic_batch(cfg: PretrainConfig, g: int, device: torch.device) -> dict:
    b = cfg.train.batch_size
    crops = [torch.randn(b, 3, cfg.crops.global_size, cfg.crops.global_size, device=device) for _ in range(2)]
    crops += [torch.randn(b, 3, cfg.crops.local_size, cfg.crops.local_size, device=device)
              for _ in range(cfg.crops.n_local)]
    masks = torch.rand(2, b, g, g) < 0.15
    return {"crops": crops, "masks": masks, "iteration": 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="vit_small_patch16_224,vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--data", default=None, help="any image folder (only used to build the trainer)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--preset", default="vit_small", help="pretrain preset whose crops and head are timed")
    ap.add_argument("--nominal-tflops", type=float, default=989.0,
                    help="datasheet dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="auto: what cytofm picks on this machine (fp32 on a CPU without bf16 units)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every arch, e.g. runtime.compile=true "
                         "(compiles during warm-up)")
    a = ap.parse_args()
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    n = 8192 if device.type == "cuda" else (4096 if a.precision != "fp32" else 2048)
    dtype, prec = precision_of(a.precision, device)
    peak = matmul_peak(device, n, dtype=dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}: precision {prec}; {prec} matmul peak ({n}^3, this run): {peak / 1e9:.0f} GFLOP/s")
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        data = a.data or tmp
        if a.data is None:
            Image.new("RGB", (256, 256), (200, 150, 180)).save(f"{tmp}/x.png")
        for arch in a.archs.split(","):
            cfg = build_config(PretrainConfig, "pretrain", a.preset, [
                f"model.arch={arch}", f"train.batch_size={a.batch}", f"runtime.precision={prec}",
                "data.num_workers=0", "train.iterations=100000", "optim.warmup_iters=0",
                f"runtime.device={device.type}", *a.set])
            tr = SSLTrainer(cfg, [data], f"{tmp}/run-{arch}", log=lambda m: None)
            batch = synthetic_batch(cfg, cfg.crops.global_size // tr.student.backbone.patch_size, device)
            for w in range(3 if device.type == "cuda" else 1):  # warm-up (kernel selection on a GPU)
                tr.step(batch, 10 + w)
            with FlopCounterMode(display=False) as fc:
                tr.step(batch, 13)
            flops = fc.get_total_flops()
            sync(device)
            t = time.perf_counter()
            for i in range(a.steps):
                tr.step(batch, 14 + i, sync=False)
            tr.checked()
            sync(device)
            dt = (time.perf_counter() - t) / a.steps
            nominal = (f", {flops / dt / (a.nominal_tflops * 1e12):.0%} of the datasheet's "
                       f"{a.nominal_tflops:.0f} TFLOP/s" if device.type == "cuda" else "")
            print(f"{arch} ({a.preset}: {cfg.crops.global_size}x2 + "
                  f"{cfg.crops.n_local}x{cfg.crops.local_size}, "
                  f"K={cfg.head.out_dim}, batch {a.batch}): {dt:.3f} s/step, {a.batch / dt:.1f} img/s, "
                  f"{flops / 1e9:.0f} GFLOP/step, {flops / dt / 1e9:.0f} GFLOP/s = "
                  f"MFU {flops / dt / peak:.0%} of the {prec} peak measured above{nominal}")


if __name__ == "__main__":
    main()
