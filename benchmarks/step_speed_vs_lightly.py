"""iBOT step speed on this CPU, side by side in one process: cytofm's step as it was (head in fp32, the
teacher's K logits at every token), with the teacher's logits at the masked tokens only, and with the MLP
in bf16 (only the prototype layer and loss in fp32), against the lightly library's iBOT blocks, with the
bf16 matmul peak measured in the same run.

    pip install --no-deps lightly==1.6.0     # benchmark-only dependency (its loss and model modules need
                                             # nothing beyond torch, torchvision and timm)
    python benchmarks/step_speed_vs_lightly.py [--batch 16] [--steps 4] [--rounds 3]

Config for every contender: ViT-S/16, 2 x 224 + 10 x 96 crops, K = 8192 prototypes (2048-2048-256 MLP),
batch 16, bf16 autocast, attention as plain matmuls (PyTorch's fused kernel is slower in bf16 on CPU; both
get the same), block masks on the global crops (the same masks for both), AdamW, teacher EMA. The lightly
step follows its published iBOT example (DINOProjectionHead shared for [CLS] and patches, DINOLoss,
IBOTPatchLoss, MaskedVisionTransformerTIMM); its head runs under autocast and its teacher's patch head
runs at the masked tokens only. Batches are synthetic tensors, so only the step is timed. The process
re-executes itself once with the glibc heap settings of shared/notes/cpu-performance.md (both sides
get them). Contenders alternate round by round; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

HEAP = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"


def _reexec_with_heap_settings() -> None:
    if os.environ.get("GLIBC_TUNABLES") != HEAP:
        os.environ["GLIBC_TUNABLES"] = HEAP
        os.execv(sys.executable, [sys.executable, *sys.argv])


def matmul_peak(n: int = 4096, reps: int = 8) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def batch(b: int, seed: int = 0):
    import random

    import numpy as np
    import torch

    from cytofm.ssl.config import MaskConfig
    from cytofm.ssl.masking import make_mask

    g = torch.Generator().manual_seed(seed)
    crops = [torch.randn(b, 3, 224, 224, generator=g) for _ in range(2)] + [
        torch.randn(b, 3, 96, 96, generator=g) for _ in range(10)]
    rng = random.Random(seed)
    masks = torch.from_numpy(np.stack([[make_mask(MaskConfig(), 14, 14, rng) for _ in range(b)]
                                       for _ in range(2)]))
    return {"crops": crops, "masks": masks, "iteration": 0}


def cytofm_trainer(tmp: str, head_fp32, b: int):
    from PIL import Image

    from cytofm.config.loader import build_config
    from cytofm.ssl.config import PretrainConfig
    from cytofm.ssl.trainer import SSLTrainer

    Image.new("RGB", (256, 256), (200, 150, 180)).save(f"{tmp}/x.png")
    cfg = build_config(PretrainConfig, "pretrain", "vit_small", [
        f"train.batch_size={b}", "crops.n_local=10", "head.out_dim=8192", "runtime.precision=bf16",
        "runtime.fused_attn='off'", "data.num_workers=0", "train.iterations=100000", "optim.warmup_iters=0",
        f"head.fp32={str(head_fp32).lower()}", "runtime.device=cpu"])
    return SSLTrainer(cfg, [tmp], tempfile.mkdtemp(dir=tmp), log=lambda m: None)


def full_grid_losses(method):
    """The step before this change, for the record: the teacher's K logits at every token of the global
    crops (the loss indexes the masked ones and the centre sums them all)."""
    import torch

    def losses(student, views, sched, autocast):
        from cytofm.ssl.methods.base import teacher_spread

        with autocast:
            with torch.no_grad():
                t_cls, t_patch, _ = method.teacher(views.global_crops, None, None, all_patch_tokens=True)
            s_cls, s_patch, index = student(views.global_crops, views.masks, views.local_crops)
        n_views = 2 + views.local_crops.shape[0] // views.n_images
        out = method.criterion(list(s_cls.float().chunk(n_views)), s_patch.float(), index,
                               list(t_cls.float().chunk(2)), t_patch.float(), views.n_images,
                               sched["teacher_temp"], sched["teacher_patch_temp"])
        out["teacher_spread"] = teacher_spread(t_cls)
        return out

    method.losses = losses


class LightlyIBOT:
    """iBOT from lightly's blocks, as its example assembles them (the settings matched to ours)."""

    def __init__(self):
        import timm
        import torch
        from lightly.loss import DINOLoss, IBOTPatchLoss
        from lightly.models.modules import DINOProjectionHead, MaskedVisionTransformerTIMM
        from lightly.models.utils import update_momentum

        self.update_momentum = update_momentum
        vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0,
                                dynamic_img_size=True, drop_path_rate=0.1)
        for m in vit.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        self.student = MaskedVisionTransformerTIMM(vit=vit)
        self.teacher = copy.deepcopy(self.student)
        self.s_head = DINOProjectionHead(input_dim=384, output_dim=8192, norm_last_layer=False)
        # a second head, not a copy: weight_norm heads cannot be deep-copied
        self.t_head = DINOProjectionHead(input_dim=384, output_dim=8192)
        self.t_head.load_state_dict(self.s_head.state_dict())
        for p in [*self.teacher.parameters(), *self.t_head.parameters()]:
            p.requires_grad_(False)
        self.dino = DINOLoss(output_dim=8192, teacher_temp=0.04)
        self.ibot = IBOTPatchLoss(output_dim=8192, teacher_temp=0.04)
        self.opt = torch.optim.AdamW([*self.student.parameters(), *self.s_head.parameters()], lr=1e-4)

    def step(self, data: dict, it: int) -> float:
        import torch

        views = data["crops"]
        g = torch.cat(views[:2])
        loc = torch.cat(views[2:])
        block = data["masks"].reshape(-1, 14, 14)
        mask = torch.zeros(g.shape[0], 197, dtype=torch.bool)
        mask[:, 1:] = block.flatten(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                tf = self.teacher.encode(g)
                t_cls = self.t_head(tf[:, 0])
                t_masked = self.t_head(tf[mask])
            sf = self.student.encode(g, mask=mask)
            s_cls = self.s_head(sf[:, 0])
            s_masked = self.s_head(sf[mask])
            s_local = self.s_head(self.student.encode(loc)[:, 0])
            s_all = torch.cat([s_cls, s_local])
        loss = self.dino(teacher_out=t_cls.float().chunk(2), student_out=s_all.float().chunk(len(views)),
                         teacher_temp=0.04) + self.ibot(teacher_out=t_masked.float(),
                                                        student_out=s_masked.float(), mask=block,
                                                        teacher_temp=0.04)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.s_head.cancel_last_layer_gradients(it)
        self.opt.step()
        self.update_momentum(self.student, self.teacher, m=0.996)
        self.update_momentum(self.s_head, self.t_head, m=0.996)
        return float(loss)


def timed(step, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        step(i)
    return (time.perf_counter() - t) / n


def main() -> None:
    _reexec_with_heap_settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per contender and round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import torch

    try:
        import lightly  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark compares with the lightly library: "
                         "pip install --no-deps lightly==1.6.0") from None
    peak = matmul_peak()
    print(f"bf16 matmul peak (4096^3, this run): {peak / 1e9:.0f} GFLOP/s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, GLIBC_TUNABLES set")
    data = batch(a.batch)
    with tempfile.TemporaryDirectory() as tmp:
        before = cytofm_trainer(tmp, True, a.batch)
        full_grid_losses(before.method)
        contenders = {
            "cytofm before: head fp32, teacher logits at every token": before,
            "cytofm: head fp32, teacher logits at masked tokens": cytofm_trainer(tmp, True, a.batch),
            "cytofm: + MLP bf16, prototypes and loss fp32 (head.fp32=last_layer)":
                cytofm_trainer(tmp, "last_layer", a.batch),
        }
        light = LightlyIBOT()
        steps = {k: (lambda i, tr=tr: tr.step(data, 10 + i)) for k, tr in contenders.items()}
        steps["lightly 1.6 iBOT blocks"] = lambda i: light.step(data, 10 + i)
        from torch.utils.flop_counter import FlopCounterMode

        flops = {}
        for k, s in steps.items():  # warm-up, counting each step's FLOPs (they differ: see the docstring)
            with FlopCounterMode(display=False) as fc:
                s(0)
            flops[k] = fc.get_total_flops()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(a.rounds):
            for k, s in steps.items():
                times[k].append(timed(s, a.steps))
            print(f"round {r + 1}: "
                  + ", ".join(f"{k} {a.batch / v[-1]:.2f} img/s" for k, v in times.items()))
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["lightly 1.6 iBOT blocks"]
    print(f"\nViT-S/16, 2x224 + 10x96, K=8192, batch {a.batch}, bf16, "
          f"median of {a.rounds} rounds x {a.steps} steps:")
    print("| step | GFLOP/step | s/step | images/s | share of bf16 peak | speed vs lightly |\n"
          "|---|---|---|---|---|---|")
    for k, t in med.items():
        print(f"| {k} | {flops[k] / 1e9:.0f} | {t:.2f} | {a.batch / t:.2f} | {flops[k] / t / peak:.0%} "
              f"| {ref / t:.2f}x |")


if __name__ == "__main__":
    main()
