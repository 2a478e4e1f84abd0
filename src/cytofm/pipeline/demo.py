"""The demo pipeline: the whole system on the real sample shipped with the package, through the same code
as the commands.

The sample (``cytofm/demo_data``, drawn by ``scripts/build_demo_sample.py``) comes from the evaluation parts
of the shipped split, so the shipped encoder has seen none of it. Inside it, the demo's own fresh encoder
pretrains on one part (``pretrain.csv`` of each set) and every encoder is scored on the other: red-cell
morphology from 80 px crops around the annotated chula_rbc12 cells (the headline: ~700 cells, enough for
intervals of about +-0.05) and field-level white-cell type with ABMIL, its attention scored against the
white-cell boxes. The fresh encoder's export carries a pretraining record, so the benchmark's guard checks
it like any other encoder.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

STAGES = 8
FRESH = "demo_fresh.safetensors"
"""The fresh encoder's export: tables name it ``cytofm:demo_fresh.safetensors``."""
PLAN = "plan.json"
"""What the demo chose on this machine (and the measurements behind it); a re-run in the same folder
reuses it."""
SETS = ("bccd", "chula_rbc12")


def demo_data_dir() -> Path:
    return Path(str(resources.files("cytofm").joinpath("demo_data")))


@dataclass
class DemoResult:
    out: Path
    summary: list[str]
    results_md: str
    report: Path
    seconds: float


class DemoError(RuntimeError):
    """The demo cannot run (sample missing from the installation, nothing usable, training diverged)."""


def _pretraining_record(root: Path, out: Path) -> Path:
    """Every image the fresh encoder pretrains on, hashed (datasets named ``demo_<set>``: these are demo
    images, not the pretraining part of the shipped split)."""
    from cytofm.data.provenance.hashing import hash_image
    from cytofm.data.provenance.pretraining_record import write_record

    rows = []
    for name in SETS:
        with open(root / name / "pretrain.csv", newline="") as f:
            for r in csv.DictReader(f):
                h = hash_image(root / name / r["image"])
                rows.append({"dataset": f"demo_{name}", "relpath": r["image"], "sha256": h.sha256,
                             "phash": h.phash})
    return write_record(rows, out)


def run_demo(out: Path, minutes: float | None = None, iterations: int | None = None, progress=None,
             log: Callable[[str], None] = print, stage: Callable[[str], None] | None = None,
             full: bool = False, budget_minutes: float | None = None) -> DemoResult:
    """``iterations``/``minutes`` None: sized by :mod:`cytofm.pipeline.demo_plan` to the budget on the
    machine it runs on (``full``: the whole sample and schedule, however long it takes)."""
    from cytofm.pipeline.demo_plan import BUDGET_S, held_out_fields
    from cytofm.viz.report import build_report

    demo = _Demo(Path(out).resolve(), demo_data_dir(), progress, log, stage, full,
                 BUDGET_S if budget_minutes is None else 60 * budget_minutes)
    demo.check_sample()
    demo.say(f"1/{STAGES} prepare: foreground patches of the demo-pretraining fields (BCCD and chula_rbc12)")
    demo.prepare()
    demo.make_plan()
    fresh = demo.pretrain(iterations, minutes)
    demo.say(f"3/{STAGES} benchmark: shipped cytofm, fresh, random init, handcrafted; red-cell morphology "
             "(probes) and white-cell type (ABMIL, attention vs boxes)")
    bench = demo.benchmark(fresh)
    demo.say(f"4/{STAGES} train once, apply: the white-cell model (shipped encoder, ABMIL) saved, then "
             f"applied with `predict` to {held_out_fields(demo.plan.fields)} BCCD fields it was not "
             "trained on")
    predicted = demo.apply_model(bench)
    demo.say(f"5/{STAGES} ViT [CLS] attention maps of the shipped encoder on {demo.plan.maps} "
             "annotated fields")
    demo.attention_maps()
    demo.say(f"6/{STAGES} UMAP of the embeddings (cells by morphology, fields by white-cell type)")
    umaps(bench, demo.out / "umap", log)
    demo.say(f"7/{STAGES} triage: the sample's new blood-film fields ranked for schistocytes, with galleries "
             "and a review page")
    from cytofm.pipeline.demo_triage import demo_triage

    triaged = demo_triage(demo.root, demo.out, demo.progress, log)
    demo.say(f"8/{STAGES} report")
    summary_md = bench / "summary.md"
    summary = ([ln[2:] for ln in summary_md.read_text().splitlines() if ln.startswith("- ")]
               if summary_md.is_file() else []) + predicted + triaged
    report = build_report(demo.out, title="cytofm demo: red-cell morphology and white-cell type "
                                          "on unseen blood smears")
    took = demo.elapsed()
    log(f"the demo took {took / 60:.1f} min (estimated {demo.plan.total_s / 60:.1f} min before it started)")
    return DemoResult(demo.out, summary, (bench / "results.md").read_text(), report, took)


@dataclass
class _Demo:
    """The demo's stages over one output folder (subsets under OUT/plan are read back by the benchmark,
    which runs elsewhere: the folder is absolute)."""

    out: Path
    root: Path  # the shipped sample
    progress: object
    log: Callable[[str], None]
    stage: Callable[[str], None] | None
    full: bool
    budget: float  # seconds

    def __post_init__(self):
        self.t0 = time.perf_counter()
        self.plan = None
        self.fresh_plan = True

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, m: str) -> None:
        text = f"{m} (at {self.elapsed():.0f} s)"
        self.stage(text) if self.stage else self.log(f"== {text}")

    def check_sample(self) -> None:
        needed = [self.root / n / f for n in SETS for f in ("pretrain.csv", "LICENSE")] + [
            self.root / "bccd" / "manifest.csv", self.root / "chula_rbc12" / "cells.csv"]
        missing = [p for p in needed if not p.is_file()]
        if missing:
            raise DemoError(f"the demo sample is incomplete in this installation (missing {missing[0]})")
        self.out.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:
        from cytofm.config.loader import build_config
        from cytofm.data.prepare.config import PrepareConfig
        from cytofm.data.prepare.run import NothingUsable, run_prepare

        pcfg = build_config(PrepareConfig, "prepare", "smear_fields", values={
            "metadata": {"organ": "blood", "preparation": "smear"}, "output": {"qa_thumbnails": 4}})
        try:
            res = run_prepare([str(self.root / n / "pretrain.csv") for n in SETS], self.out / "prepared",
                              pcfg, progress=self.progress, log=self.log)
        except NothingUsable as e:
            raise DemoError(str(e)) from None
        self.log(f"{len(res.rows)} fields -> {res.n_patches} patches; "
                 f"QA thumbnails in {self.out / 'prepared' / 'qa'}")

    def make_plan(self) -> None:
        """The saved plan of an earlier run (unless it had a larger budget, or ``full``), else measure."""
        from cytofm.pipeline.demo_plan import DemoPlan, measure, plan_demo

        saved = DemoPlan.load(self.out / PLAN)
        self.fresh_plan = saved is None or self.full or saved.budget_s > self.budget
        if not self.fresh_plan:
            self.plan = saved
            self.log(f"the plan of the first run in {self.out} (delete {PLAN} to measure the machine again):")
        else:
            self.plan = plan_demo(measure(self.out / "prepared"), self.budget - self.elapsed(), self.full)
            # an interrupted run resumes its pretraining with the same schedule
            self.plan.save(self.out / PLAN)
        for line in self.plan.lines():
            self.log(line)

    def pretrain(self, iterations: int | None, minutes: float | None) -> Path:
        """Pretrain the fresh encoder and export it with its pretraining record; a fresh plan is measured
        again against the pretraining as it ran."""
        from cytofm.config.loader import build_config
        from cytofm.data.provenance.pretraining_record import attach_record
        from cytofm.ssl.checkpoint import export_run
        from cytofm.ssl.config import PretrainConfig
        from cytofm.ssl.trainer import SSLTrainer, TrainingDiverged

        plan = self.plan
        iterations = plan.iterations if iterations is None else iterations
        if minutes is None:  # a guard against a slower machine than measured: twice the planned time
            minutes = max(0.5, 2 * plan.estimate["pretraining"] / 60) if not self.full else None
        self.say(f"2/{STAGES} pretrain: iBOT, cpu preset, {iterations} iterations"
                 + (f" or {minutes:.1f} min" if minutes else "") + ", on those fields only")
        run = self.out / "pretrain"
        cfg = build_config(PretrainConfig, "pretrain", "cpu", [
            f"train.iterations={iterations}",
            f"train.max_minutes={minutes}" if minutes else "train.max_minutes=null",
            "train.save_every=50"])
        t_pre = time.perf_counter()
        try:
            trainer = SSLTrainer(cfg, [str(self.out / "prepared")], run, None, log=self.log,
                                 progress=self.progress, command="cytofm demo")
            trainer.run()
        except TrainingDiverged as e:
            raise DemoError(str(e)) from None
        fresh, js, it = export_run(run, run / FRESH)
        if self.fresh_plan and not self.full:
            self._replan(it - trainer.start_iter, time.perf_counter() - t_pre)
        attach_record(js, _pretraining_record(self.root, run / "pretraining_record.csv.gz"))
        self.log(f"exported the fresh teacher (iteration {it}) to {fresh}, with its pretraining record")
        return fresh

    def _replan(self, ran: int, seconds: float) -> None:
        from cytofm.pipeline.demo_plan import remeasure, replan_items

        step_s = seconds / ran if ran > 0 else self.plan.machine.step_s
        self.plan = replan_items(self.plan, remeasure(self.plan.machine, step_s),
                                 self.budget - self.elapsed(), pretraining_s=step_s * max(ran, 0))
        self.log("measured again after pretraining: " + " ".join(self.plan.lines()[:2]))
        self.plan.save(self.out / PLAN)

    def benchmark(self, fresh: Path) -> Path:
        from cytofm.config.loader import build_config, write_config
        from cytofm.eval.config import BenchmarkConfig
        from cytofm.pipeline.benchmark import run_benchmark

        bcfg = build_config(BenchmarkConfig, "benchmark", "demo")
        bcfg = bcfg.model_copy(update={"encoders": [*bcfg.encoders, f"cytofm:{fresh}"],
                                       "tasks": _sized_tasks(bcfg.tasks, self.root, self.out / "plan",
                                                             self.plan)})
        bench = self.out / "benchmark"
        bench.mkdir(exist_ok=True)
        write_config(bcfg, bench / "config.yaml")
        run_benchmark(bcfg, self.root, bench, self.progress, log=self.log)
        return bench

    def apply_model(self, bench: Path) -> list[str]:
        """The white-cell model as a lab keeps it: ABMIL on the shipped encoder's bags of the task's fields,
        saved with ``model.json``; then ``predict`` on the BCCD fields of the sample that no model was
        trained on (the demo-pretraining fields: unseen by the shipped encoder, unlabelled)."""
        from cytofm.eval.config import MilConfig
        from cytofm.eval.evaluate_store import evaluate_mil, prepare_eval
        from cytofm.eval.saved_model import SavedModel, save_mil_run
        from cytofm.pipeline.demo_plan import held_out_fields
        from cytofm.pipeline.predict import run_predict
        from cytofm.utils.io import write_csv

        stores = [m.parent for m in sorted((bench / "cache").glob("*/cytofm/manifest.csv"))
                  if "wbc_type" in m.read_text().split("\n", 1)[0]]
        if not stores:
            self.log("no white-cell store of the shipped encoder in the benchmark cache: nothing to apply")
            return []
        cfg = MilConfig(features=str(stores[0]), label="wbc_type", folds=5, seeds=[0], epochs=40)
        run = self.out / "white_cell_model"
        if (run / "model.json").is_file():  # a re-run: the model of the first run
            n_models = len(SavedModel.read(run).members("ensemble"))
            self.log(f"the white-cell model of the first run in {run}, reused")
        else:
            data, splits = prepare_eval(stores[0], cfg.label, folds=cfg.folds, seeds=cfg.seeds, log=self.log,
                                        warn=self.log)
            summary = evaluate_mil(data, splits, run, cfg.epochs, cfg.lr, model=cfg.model, save_models=True)
            save_mil_run(stores[0], run, data, summary, cfg)
            n_models = len(summary["_members"])
        with open(self.root / "bccd" / "pretrain.csv", newline="") as f:
            fields = list(csv.DictReader(f))[: held_out_fields(self.plan.fields)]
        new = self.out / "plan" / "bccd" / "new_fields.csv"
        write_csv(new, [{"image": str(self.root / "bccd" / r["image"])} for r in fields], ["image"])
        res = run_predict(run, new, self.out / "predict",
                          heatmaps=6, progress=self.progress, log=self.log)
        counts: dict[str, int] = {}
        with open(self.out / "predict" / "predictions.csv", newline="") as f:
            for r in csv.DictReader(f):
                counts[r["pred"]] = counts.get(r["pred"], 0) + 1
        found = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        applied = res.seconds["apply"] + res.seconds["heatmaps"]
        line = (f"predict: the saved white-cell model ({n_models} fold models) on {res.n_items} new fields: "
                f"{found}; apply and heatmaps took {applied:.1f} s, the extraction "
                f"{res.seconds['extract']:.1f} s")
        self.log(line)
        return [line]

    def attention_maps(self) -> None:
        """[CLS] attention of the shipped encoder on fields spread over the BCCD manifest, scored on the
        boxes."""
        from cytofm.models.zoo import create_encoder
        from cytofm.viz.heatmaps import vit_heatmaps

        maps, bccd = self.plan.maps, self.root / "bccd"
        enc = create_encoder("cytofm")
        enc.model.eval()
        with open(bccd / "manifest.csv", newline="") as f:
            images = [bccd / r["image"] for r in csv.DictReader(f)]
        picks = [images[k] for k in np.linspace(0, len(images) - 1, maps).round().astype(int)]
        scores = vit_heatmaps(enc, [str(p) for p in picks], self.out / "heatmaps" / "vit_attention_cytofm",
                              bccd / "annotations", "WBC", limit=maps, log=self.log, progress=self.progress)
        if scores:
            from cytofm.viz.localization import summarise

            s = summarise(scores)
            self.log(f"[CLS] attention mass on the white cell {s['mass']:.3f} (its area share "
                     f"{s['chance_mass']:.3f}); peak on the white cell in {s['hit']:.0%} of {s['n']} fields")


def _sized_tasks(tasks, root: Path, plan_dir: Path, plan) -> list:
    """The demo's tasks on the planned number of items: stratified subsets of the cell table and of the
    field manifest written under OUT/plan (the whole tables when they fit)."""
    from cytofm.pipeline.demo_plan import FULL_CELLS, FULL_FIELDS, write_subset

    sized = []
    for t in tasks:
        if t.points and plan.cells < FULL_CELLS:
            src = root / t.points
            with open(src, newline="") as f:
                labels = [r[t.label] for r in csv.DictReader(f)]
            kept = sum(v not in set(t.exclude) for v in labels)
            # the excluded types are in the table too: keep the planned share of the rest
            sub = write_subset(src, plan_dir / "chula_rbc12" / "cells.csv",
                               int(round(plan.cells * len(labels) / max(kept, 1))), t.label)
            t = t.model_copy(update={"data": str(sub), "points": str(sub)})
        elif t.eval == "mil" and plan.fields < FULL_FIELDS:
            sub = write_subset(root / t.data, plan_dir / "bccd" / "manifest.csv", plan.fields, t.label)
            t = t.model_copy(update={"data": str(sub)})
        sized.append(t)
    return sized


COLOR_BY = {"type": None, "wbc_type": {"neutrophil", "eosinophil", "lymphocyte", "monocyte"}}


def umaps(bench: Path, out: Path, log=print) -> list[Path]:
    """One map per store of the benchmark cache (items mean-pooled), coloured by the task's label."""
    from cytofm.viz.embedding import store_map

    written = []
    for m in sorted((bench / "cache").glob("*/*/manifest.csv")):
        store = m.parent
        if not (store / "features").is_dir():  # prepared sets and crop folders are not feature stores
            continue
        header = m.read_text().split("\n", 1)[0].split(",")
        col = next((c for c in COLOR_BY if c in header), None)
        if col is None:
            continue
        tag = store.parent.name.split("_")[0]
        png, *_ = store_map(store, col, out / f"umap_{tag}_{store.name}.png", keep=COLOR_BY[col], log=log)
        written.append(png)
    return written
