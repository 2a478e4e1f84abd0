"""Frozen-feature extraction throughput (images/s) and achieved FLOP/s against the bf16 matmul peak.

Usage: python benchmarks/extract_throughput.py [--archs ...] [--batch 32] [--batches 4] [--data DIR]

Times the encoder forward (bf16 autocast, inference mode, plain-matmul attention on CPU) at 224 px on
random weights; with --data it also times the whole `run_extract` path (decode, resize, batching, h5)
on that folder in image mode. FLOPs of a batch come from torch's FlopCounterMode.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from ibot_throughput import matmul_peak  # noqa: E402  (same folder)
from torch.utils.flop_counter import FlopCounterMode

from cytofm.features.extract import embed_batch, run_extract
from cytofm.models.vit import set_fused_attn
from cytofm.models.zoo import create_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="vit_small_patch16_224,vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    peak = matmul_peak()
    print(f"bf16 matmul peak (4096^3, this run): {peak / 1e9:.0f} GFLOP/s")
    dev = torch.device("cpu")
    for arch in a.archs.split(","):
        enc = create_encoder(f"random:{arch}")
        x = torch.randn(a.batch, 3, 224, 224)
        for fused in (True, False):
            set_fused_attn(enc.model, fused)
            embed_batch(enc, x, dev, torch.bfloat16, False)
            with FlopCounterMode(display=False) as fc:
                embed_batch(enc, x, dev, torch.bfloat16, False)
            t = time.perf_counter()
            for _ in range(a.batches):
                embed_batch(enc, x, dev, torch.bfloat16, False)
            dt = (time.perf_counter() - t) / a.batches
            flops = fc.get_total_flops()
            print(f"{arch} ({'fused' if fused else 'matmul'} attention): {a.batch / dt:.1f} img/s, "
                  f"{flops / dt / 1e9:.0f} GFLOP/s = {flops / dt / peak:.0%} of the bf16 peak")
        if a.data:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_extract(enc, a.data, "image", tmp, batch_size=a.batch, workers=1, log=lambda m: None)
            print(f"{arch} end to end on {a.data}: {r['instances_per_s']:.1f} images/s")


if __name__ == "__main__":
    main()
