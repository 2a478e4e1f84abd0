"""Frozen-feature extraction throughput (images/s) and achieved FLOP/s against the matmul peak measured in the
same run at the precision extraction uses (bf16 where the CPU has bf16 units, else fp32; ``--precision``).

Usage: python benchmarks/extract_throughput.py [--archs ...] [--batch 32] [--batches 4] [--data DIR]

Times the encoder forward (inference mode, fused and plain-matmul attention) at 224 px on
random weights; with --data it also times the whole `run_extract` path (decode, resize, batching, h5)
on that folder in image mode. FLOPs of a batch come from torch's FlopCounterMode.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from ibot_throughput import matmul_peak, precision_of  # noqa: E402  (same folder)
from torch.utils.flop_counter import FlopCounterMode

from cytofm.features.config import ExtractConfig
from cytofm.features.extract import embed_batch, run_extract
from cytofm.models.vit import set_fused_attn
from cytofm.models.zoo import create_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="vit_small_patch16_224,vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--data", default=None)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    a = ap.parse_args()
    dev = torch.device("cpu")
    dtype, prec = precision_of(a.precision, dev)
    peak = matmul_peak(dev, 4096 if prec == "bf16" else 2048, dtype=dtype)
    print(f"precision {prec}; {prec} matmul peak (this run): {peak / 1e9:.0f} GFLOP/s")
    autocast = dtype if dtype != torch.float32 else None
    for arch in a.archs.split(","):
        enc = create_encoder(f"random:{arch}")
        x = torch.randn(a.batch, 3, 224, 224)
        for fused in (True, False):
            set_fused_attn(enc.model, fused)
            embed_batch(enc, x, dev, autocast, False)
            with FlopCounterMode(display=False) as fc:
                embed_batch(enc, x, dev, autocast, False)
            t = time.perf_counter()
            for _ in range(a.batches):
                embed_batch(enc, x, dev, autocast, False)
            dt = (time.perf_counter() - t) / a.batches
            flops = fc.get_total_flops()
            print(f"{arch} ({'fused' if fused else 'matmul'} attention): {a.batch / dt:.1f} img/s, "
                  f"{flops / dt / 1e9:.0f} GFLOP/s = {flops / dt / peak:.0%} of the {prec} peak")
        if a.data:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_extract(enc, ExtractConfig(input=str(a.data), mode="image", out=str(tmp),
                                                   batch_size=a.batch, workers=1), log=lambda m: None)
            print(f"{arch} end to end on {a.data}: {r['instances_per_s']:.1f} images/s")


if __name__ == "__main__":
    main()
