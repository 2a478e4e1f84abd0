"""Size the demo to the machine it finds: measure a few forward and training steps (seconds), estimate
each stage, and choose the pretraining length and the number of cells and fields that fit the budget.

CPUs of one machine kind differ several-fold (bf16 units or fp32 only, 350-900 GFLOP/s bf16 peaks), so a
fixed demo that takes 6 minutes on one takes 30 on another. The cost model counts the demo's work in two
measured units: seconds per ViT-S/16 forward image at 224 px (every extraction, attention map and ABMIL bag
is that) and seconds per pretraining iteration of the ``cpu`` preset (measured on the demo's own
prepared fields with the real trainer); the rest (decoding, probes, ABMIL, UMAP) is counted in seconds of
the reference machine, scaled by a scikit-learn fit's time against the reference's. ``plan_demo`` never
drops a task or an encoder: the headline stays the same comparison, on fewer items where it must.
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytofm.utils.io import strict_json

BUDGET_S = 540.0
"""The demo's own work (the install not counted): 9 minutes, a minute's margin under the 10 promised."""
REFERENCE_VIT_S = 1 / 89.0
"""Seconds per ViT-S/16 224 px forward image (:func:`measure_vit`) on the reference machine (a 2-core
bf16 CPU, where the full demo took 351 s: pretraining 87 s, cells 108 s, fields 119 s, the rest 37 s)."""
REFERENCE_CPU_S = 0.10
"""Seconds of :func:`measure_cpu` (a scikit-learn fit) on the reference machine."""
PER_CELL = {"forwards": 2.5, "overhead_s": 0.040, "evaluation_s": 0.073}
"""One red-cell crop: ViT-S forwards (shipped and random init, the fresh ViT-Ti about half of one), decoding
and cropping for four encoders, and its share of the probes (15 splits x 2 methods x 4 encoders); the
reference machine's seconds, which scale with the scikit-learn fit's time."""
PER_FIELD = {"forwards": 34 * 2.5, "overhead_s": 0.48, "evaluation_s": 0.94}
"""One BCCD field: its ~34 96 px patches through the encoders, and its share of ABMIL (5 folds x 4 encoders)
with the attention scored and drawn."""
PREDICT_PER_FIELD = {"forwards": 34, "overhead_s": 0.12, "evaluation_s": 0.24}
"""One held-out field in `predict`: its patches through the shipped encoder only, and a quarter of a task
field's overhead and ABMIL (one encoder's five folds, trained once for the saved model). Measured: 19 fields
in 24 s on a machine this model estimated at 23 s."""
FIXED_S = {"start-up and prepare": 10.0, "UMAP": 25.0, "triage": 30.0, "report": 3.0}
"""Stages that do not grow with the items, on the reference machine (scaled by the scikit-learn fit's
time)."""
ATTENTION_MAPS_S = 8.0 / 6
"""One attention map of the shipped encoder on the reference machine (scaled by the forward's time)."""
MIN_ITERATIONS, MAX_ITERATIONS = 30, 120
FULL_CELLS, MIN_CELLS = 763, 250
FULL_MAPS, MIN_MAPS = 6, 3
FULL_FIELDS, MIN_FIELDS = 50, 20
HELD_OUT_FIELDS = 20
"""BCCD fields outside the white-cell task, to which the demo applies its saved model with `predict`
(extracted once with the shipped encoder, like a task's field; the model trains five folds, as one task)."""


def held_out_fields(fields: int) -> int:
    """The held-out fields `predict` reads, shrunk with the task's fields (at least 5)."""
    return max(5, round(HELD_OUT_FIELDS * fields / FULL_FIELDS))


@dataclass
class Machine:
    precision: str
    vit_s_per_image: float
    step_s: float
    cpu_s: float
    threads: int

    def lines(self) -> list[str]:
        return [f"machine: {self.threads} thread(s), {self.precision}; ViT-S/16 at 224 px "
                f"{1 / self.vit_s_per_image:.1f} images/s ({self.vit_s_per_image / REFERENCE_VIT_S:.1f}x "
                f"the reference machine's time), one pretraining iteration {self.step_s:.2f} s, "
                f"a scikit-learn fit {self.cpu_s / REFERENCE_CPU_S:.1f}x the reference's time"]


@dataclass
class DemoPlan:
    machine: Machine
    iterations: int
    cells: int
    fields: int
    maps: int
    estimate: dict[str, float] = field(default_factory=dict)
    budget_s: float = BUDGET_S
    notes: list[str] = field(default_factory=list)

    def save(self, path: Path) -> Path:
        from dataclasses import asdict

        path.write_text(strict_json(asdict(self)))
        return path

    @classmethod
    def load(cls, path: Path) -> DemoPlan | None:
        """The plan a first run saved (None when there is none or it does not read): a re-run sizes itself
        the same way, so it reuses every stage instead of re-measuring into another sample."""
        import json

        try:
            d = json.loads(path.read_text())
            return cls(**{**d, "machine": Machine(**d["machine"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    @property
    def total_s(self) -> float:
        return sum(self.estimate.values())

    @property
    def reduced(self) -> bool:
        return (self.cells < FULL_CELLS or self.fields < FULL_FIELDS or self.iterations < MAX_ITERATIONS
                or self.maps < FULL_MAPS)

    def lines(self) -> list[str]:
        out = self.machine.lines()
        what = (f"plan: pretraining {self.iterations} iterations, red cells {self.cells} of {FULL_CELLS}, "
                f"BCCD fields {self.fields} of {FULL_FIELDS}, attention maps {self.maps}; "
                f"estimated {self.total_s / 60:.1f} min of a {self.budget_s / 60:.0f} min budget ("
                + ", ".join(f"{k} {v:.0f} s" for k, v in self.estimate.items()) + ")")
        out.append(what)
        if self.reduced:
            out.append("the full demo would not fit this machine's budget: same tasks and encoders on "
                       "fewer items (wider intervals); `cytofm demo --full` runs all of it")
        return out + self.notes


def estimate(m: Machine, iterations: int, cells: int, fields: int, maps: int = FULL_MAPS) -> dict[str, float]:
    cpu = max(1.0, m.cpu_s / REFERENCE_CPU_S)

    def items(per: dict, n: int) -> float:
        return n * (per["forwards"] * m.vit_s_per_image + (per["overhead_s"] + per["evaluation_s"]) * cpu)

    return {"pretraining": iterations * m.step_s, "red cells": items(PER_CELL, cells),
            "BCCD fields": items(PER_FIELD, fields),
            "predict (new fields)": items(PREDICT_PER_FIELD, held_out_fields(fields)),
            "attention maps": maps * ATTENTION_MAPS_S * m.vit_s_per_image / REFERENCE_VIT_S,
            **{k: v * cpu for k, v in FIXED_S.items()}}


def plan_demo(m: Machine, budget_s: float = BUDGET_S, full: bool = False) -> DemoPlan:
    """The largest demo that fits ``budget_s``: the items (cells, fields) and the pretraining shrink together
    (at a share s of the way from the minimum to the full demo, pretraining gets at least its share of
    iterations and whatever time is left, up to 120), never below the minimums; where even the minimum does
    not fit, the minimum runs and says so with its estimate."""
    if full:
        return DemoPlan(m, MAX_ITERATIONS, FULL_CELLS, FULL_FIELDS, FULL_MAPS,
                        estimate(m, MAX_ITERATIONS, FULL_CELLS, FULL_FIELDS, FULL_MAPS), budget_s)
    for share, (cells, fields, maps) in _ladder():
        rest = budget_s - sum(estimate(m, 0, cells, fields, maps).values())
        iterations = min(MAX_ITERATIONS, int(rest / max(m.step_s, 1e-6)))
        if iterations >= MIN_ITERATIONS + share * (MAX_ITERATIONS - MIN_ITERATIONS):
            return DemoPlan(m, iterations, cells, fields, maps, estimate(m, iterations, cells, fields, maps),
                            budget_s)
    plan = DemoPlan(m, MIN_ITERATIONS, MIN_CELLS, MIN_FIELDS, MIN_MAPS,
                    estimate(m, MIN_ITERATIONS, MIN_CELLS, MIN_FIELDS, MIN_MAPS), budget_s)
    plan.notes.append(f"warning: even the smallest useful demo needs about {plan.total_s / 60:.0f} min "
                      f"on this machine (budget {budget_s / 60:.0f} min); running it anyway")
    return plan


def replan_items(plan: DemoPlan, m: Machine, budget_s: float, pretraining_s: float) -> DemoPlan:
    """After pretraining (which took ``pretraining_s``): the items sized again with the forward and
    scikit-learn speeds measured anew and the time that is left (a machine busy during the first
    measurement, as right after an install, would otherwise shrink the benchmark for nothing; one slower
    than measured gets fewer items). Never below the minimums, never above the full demo."""
    for share, (cells, fields, maps) in _ladder():
        e = estimate(m, 0, cells, fields, maps)
        if sum(e.values()) <= budget_s or share == 0:
            return DemoPlan(m, plan.iterations, cells, fields, maps, {**e, "pretraining": pretraining_s},
                            plan.budget_s, list(plan.notes))
    raise AssertionError("the ladder ends at share 0")


def _ladder(steps: int = 41):
    """(share, (cells, fields, maps)) from the full demo (share 1) down to the minimums (share 0)."""
    for share in np.linspace(1.0, 0.0, steps):
        yield share, tuple(int(round(lo + share * (hi - lo))) for lo, hi in (
            (MIN_CELLS, FULL_CELLS), (MIN_FIELDS, FULL_FIELDS), (MIN_MAPS, FULL_MAPS)))


def remeasure(m: Machine, step_s: float) -> Machine:
    """The machine as measured now (forward, scikit-learn) with the pretraining step as it ran."""
    import torch

    from cytofm.utils.distributed import pick_dtype

    return Machine(m.precision, measure_vit(pick_dtype("auto", torch.device("cpu"))), step_s, measure_cpu(),
                   m.threads)


def measure_cpu() -> float:
    """Seconds of a fixed scikit-learn fit (what probes, ABMIL's bookkeeping and UMAP's neighbours cost is
    closer to than a matmul): the best of three."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 128)), rng.integers(0, 4, 2000)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        LogisticRegression(max_iter=200, tol=1e-12).fit(x, y)
        times.append(time.perf_counter() - t)
    return min(times)


def measure_vit(dtype, batch: int = 16) -> float:
    """Seconds per image of a ViT-S/16 forward pass at 224 px, as extraction runs it (one warm-up batch)."""
    import contextlib

    import torch

    from cytofm.models.build import build_model
    from cytofm.models.vit import set_fused_attn

    torch.manual_seed(0)
    model = build_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
    set_fused_attn(model, False)
    x = torch.randn(batch, 3, 224, 224)
    ctx = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype is not None else contextlib.nullcontext
    times = []
    with torch.inference_mode():
        for _ in range(3):
            t = time.perf_counter()
            with ctx():
                model(x)
            times.append(time.perf_counter() - t)
    return min(times[1:]) / batch


def measure_step(prepared: Path, batch: int = 16) -> float:
    """Seconds per ``cpu``-preset pretraining iteration (batch 32), timed on two iterations of the real
    trainer at half the batch after one warm-up (scaled up linearly: a small batch carries more fixed cost
    per image, so the estimate errs long, by 10-30% where measured). The faster of the two timed iterations
    counts: right after an install or a test run the machine can be busy for seconds, and a plan sized to
    that would shrink the demo for nothing (the pretraining stage keeps a wall-time guard)."""
    from cytofm.config.loader import build_config
    from cytofm.ssl.config import PretrainConfig
    from cytofm.ssl.trainer import SSLTrainer

    full = build_config(PretrainConfig, "pretrain", "cpu").train.batch_size
    cfg = build_config(PretrainConfig, "pretrain", "cpu", [f"train.batch_size={batch}", "data.num_workers=0",
                                                          "train.iterations=1000"])
    with tempfile.TemporaryDirectory() as tmp:
        tr = SSLTrainer(cfg, [str(prepared)], Path(tmp) / "run", log=lambda m: None)
        times = []
        for it in range(3):
            t = time.perf_counter()
            b = tr.dataset[it]
            if "images" in b:
                b = tr.dataset.views(b, tr.device)
            tr.step(b, it)
            times.append(time.perf_counter() - t)
    return min(times[1:]) * full / batch  # the best: a passing load on the machine must not halve the demo


def measure(prepared: Path) -> Machine:
    import torch

    from cytofm.utils.distributed import pick_dtype

    dtype = pick_dtype("auto", torch.device("cpu"))
    precision = "bf16 (the CPU has bf16 units)" if dtype is not None else "fp32 (no bf16 units on this CPU)"
    return Machine(precision, measure_vit(dtype), measure_step(prepared), measure_cpu(),
                   torch.get_num_threads())


def stratified_subset(rows: list[dict], n: int, key: str, seed: int = 0) -> list[dict]:
    """``n`` of ``rows`` with every value of ``key`` kept in proportion (at least 5 where it has them:
    five folds need five of a class): a seeded draw, the order of ``rows`` kept."""
    if n >= len(rows):
        return list(rows)
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(r[key], []).append(i)
    keep: list[int] = []
    for idx in by.values():
        k = max(min(5, len(idx)), int(math.floor(len(idx) * n / len(rows))))
        keep += rng.choice(idx, size=min(k, len(idx)), replace=False).tolist()
    return [rows[i] for i in sorted(keep)]


def write_subset(src: Path, dest: Path, n: int, key: str) -> Path:
    """A copy of the table ``src`` with ``n`` of its rows (:func:`stratified_subset`), its relative paths
    made absolute so that it can live in the output folder."""
    with open(src, newline="") as f:
        reader = csv.DictReader(f)
        rows, cols = list(reader), list(reader.fieldnames or [])
    keep = stratified_subset(rows, n, key)
    for r in keep:
        for c in ("image", "annotation"):
            if r.get(c):
                r[c] = str((src.parent / r[c]).resolve())
    dest = dest.resolve()  # the benchmark reads task paths relative to the sample, not to the current folder
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(keep)
    return dest
