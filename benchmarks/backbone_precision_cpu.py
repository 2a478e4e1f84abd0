"""Can the ViT-S/16 backbone itself get faster on this CPU? Student forward + backward of one iBOT view set
(2 x 224 + 10 x 96 crops, batch 16, plain-matmul attention, glibc heap settings) four ways, in one run,
as ratios against bf16 autocast (what cytofm and lightly both run):

- bf16 autocast (reference);
- bf16 end to end: the fp32 master weights cast to bf16 once per step and the whole forward in bf16 (no
  autocast casts; what FSDP mixed precision does in the DINOv2 reference);
- each of the two compiled with torch.compile (inductor: fused element-wise kernels).

    python benchmarks/backbone_precision_cpu.py [--rounds 3] [--no-compile]

Written for item 5 of the step-speed issue: with AMX the matmuls are about half of a step, so this measures
how much of the other half the two usual remedies (no casts, fused element-wise chains) win back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HEAP = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"


def main() -> None:
    if os.environ.get("GLIBC_TUNABLES") != HEAP:
        os.environ["GLIBC_TUNABLES"] = HEAP
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    import timm
    import torch
    from torch.func import functional_call

    sys.path.insert(0, os.path.dirname(__file__))
    from step_speed_vs_lightly import matmul_peak

    torch.manual_seed(0)
    b = 16
    g, loc = torch.randn(2 * b, 3, 224, 224), torch.randn(10 * b, 3, 96, 96)
    vit = timm.create_model("vit_small_patch16_224", num_classes=0, dynamic_img_size=True, drop_path_rate=0.1)
    for m in vit.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False

    def autocast_fwd(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return vit(x)

    def bf16_fwd(params, x):
        return functional_call(vit, params, (x.to(torch.bfloat16),))

    def autocast_step(fwd):
        def step():
            (fwd(g).float().sum() + fwd(loc).float().sum()).backward()
        return step

    def bf16_step(fwd):
        def step():
            p = {n: q.to(torch.bfloat16) for n, q in vit.named_parameters()}
            (fwd(p, g).float().sum() + fwd(p, loc).float().sum()).backward()
        return step

    steps = {"bf16 autocast (reference)": autocast_step(autocast_fwd), "bf16 end to end": bf16_step(bf16_fwd)}
    if not a.no_compile:
        steps["bf16 autocast, compiled"] = autocast_step(torch.compile(autocast_fwd))
        steps["bf16 end to end, compiled"] = bf16_step(torch.compile(bf16_fwd))
    peak = matmul_peak()
    print(f"bf16 matmul peak (this run): {peak / 1e9:.0f} GFLOP/s; torch {torch.__version__}, "
          f"timm {timm.__version__}")
    for k, s in steps.items():
        t = time.perf_counter()
        s(), s()
        print(f"warm-up {k}: {time.perf_counter() - t:.0f} s", flush=True)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(a.rounds):
        for k, s in steps.items():
            t = time.perf_counter()
            s(), s()
            times[k].append((time.perf_counter() - t) / 2)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["bf16 autocast (reference)"]
    print(f"\nViT-S/16 student forward + backward, 2x224 + 10x96, batch {b}, "
          f"median of {a.rounds} rounds x 2:")
    print("| backbone | s/step | speed vs autocast |\n|---|---|---|")
    for k, t in med.items():
        print(f"| {k} | {t:.2f} | {ref / t:.2f}x |")


if __name__ == "__main__":
    main()
