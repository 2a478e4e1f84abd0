"""``cytofm demo``: the whole system on the real sample shipped with the package, through the same code
as the commands: prepare -> pretrain (cpu preset, a few minutes) -> benchmark (`demo` preset: extraction
with the shipped encoder, the fresh one and random; ABMIL and probes; attention scored against the white-cell
boxes) -> ViT attention maps -> UMAP -> report.html. A second run reuses every finished stage."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, make_progress, out_console, user_errors


def demo_data_dir() -> Path:
    return Path(str(resources.files("cytofm").joinpath("demo_data")))


def _stage(name: str, t0: float) -> None:
    console.print(f"[bold cyan]== {name}[/bold cyan] (at {time.perf_counter() - t0:.0f} s)")


@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("cytofm-demo"),
    minutes: Annotated[float, typer.Option(help="Wall-time budget of the pretraining stage (the rest takes ~5 min on 2 cores).")] = 3.0,
    iterations: Annotated[int, typer.Option(help="Pretraining iterations (the schedule length; stopped early by --minutes).")] = 120,
) -> None:
    """Run the whole pipeline on the shipped BCCD blood-smear sample (60 fields; MIT licence, see
    demo_data/bccd/LICENSE) and write OUT/report.html."""
    import numpy as np

    from cytofm.config.loader import build_config
    from cytofm.data.prepare import NothingUsable, run_prepare
    from cytofm.data.prepare_config import PrepareConfig
    from cytofm.eval.benchmark import BenchmarkConfig, run_benchmark
    from cytofm.models.zoo import create_encoder
    from cytofm.ssl.checkpoint import export_run
    from cytofm.ssl.config import PretrainConfig
    from cytofm.ssl.trainer import IBOTTrainer, TrainingDiverged
    from cytofm.viz.heatmaps import vit_heatmaps
    from cytofm.viz.report import build_report

    t0 = time.perf_counter()
    root = demo_data_dir()
    manifest = root / "bccd" / "manifest.csv"
    if not manifest.is_file():
        fail(f"the demo sample is missing from the installation ({manifest})")
    out.mkdir(parents=True, exist_ok=True)
    with make_progress() as progress:
        def log(m):
            progress.console.print(m, markup=False, soft_wrap=True)

        _stage("1/6 prepare: foreground patches of 60 smear fields", t0)
        pcfg = build_config(PrepareConfig, "prepare", "smear_fields", values={
            "metadata": {"label_column": "wbc_type", "organ": "blood", "preparation": "smear", "stain": "giemsa",
                         "dataset": "bccd"},
            "output": {"qa_thumbnails": 4}})
        try:
            res = run_prepare([str(manifest)], out / "prepared", pcfg, progress=progress, log=log)
        except NothingUsable as e:
            fail(str(e), code=1)
        log(f"{len(res.rows)} fields -> {res.n_patches} patches; QA thumbnails in {out / 'prepared' / 'qa'}")

        _stage(f"2/6 pretrain: iBOT, cpu preset, {iterations} iterations or {minutes:g} min", t0)
        run = out / "pretrain"
        cfg = build_config(PretrainConfig, "pretrain", "cpu", [f"train.iterations={iterations}",
                                                              f"train.max_minutes={minutes}", "train.save_every=50"])
        try:
            IBOTTrainer(cfg, [str(out / "prepared")], run, None, log=log, progress=progress,
                        command="cytofm demo").run()
        except TrainingDiverged as e:
            fail(str(e), code=1)
        fresh, _, it = export_run(run, run / "model.safetensors")
        log(f"exported the fresh teacher (iteration {it}) to {fresh}")

        _stage("3/6 benchmark: extract (shipped cytofm, fresh, random), ABMIL + probes, attention vs WBC boxes", t0)
        bcfg = build_config(BenchmarkConfig, "benchmark", "demo")
        bcfg = bcfg.model_copy(update={"encoders": [*bcfg.encoders, f"cytofm:{fresh}"]})
        bench = out / "benchmark"
        bench.mkdir(exist_ok=True)
        from cytofm.config.loader import write_config

        write_config(bcfg, bench / "config.yaml")
        run_benchmark(bcfg, root, bench, progress, log=log)

        _stage("4/6 ViT [CLS] attention maps of the shipped encoder on annotated fields", t0)
        enc = create_encoder("cytofm")
        enc.model.eval()
        images = sorted((root / "bccd" / "images").glob("*.jpg"))
        picks = [images[k] for k in np.linspace(0, len(images) - 1, 6).round().astype(int)]
        scores = vit_heatmaps(enc, [str(p) for p in picks], out / "heatmaps" / "vit_attention_cytofm",
                              root / "bccd" / "annotations", "WBC", limit=6, log=log, progress=progress)
        if scores:
            from cytofm.viz.localization import summarise

            s = summarise(scores)
            log(f"[CLS] attention mass on the white cell {s['mass']:.3f} (its area share {s['chance_mass']:.3f}); "
                f"peak on the white cell in {s['hit']:.0%} of {s['n']} fields")

    _stage("5/6 UMAP of field embeddings", t0)
    _umaps(bench, out / "umap")
    _stage("6/6 report", t0)
    report = build_report(out, title="cytofm demo: BCCD white-cell type")
    out_console.print((bench / "results.md").read_text())
    console.print(f"[green]demo finished[/green] in {time.perf_counter() - t0:.0f} s; report: {report.resolve()}")


def _umaps(bench: Path, out: Path) -> None:
    """One map per encoder of the benchmark's BCCD store (fields mean-pooled, coloured by white-cell type)."""
    from cytofm.viz.embedding import store_map

    for store in sorted(p.parent for p in (bench / "cache").glob("*/*/manifest.csv") if p.parent.name != "prepared"):
        store_map(store, "wbc_type", out / f"umap_{store.name}.png",
                  keep={"neutrophil", "eosinophil", "lymphocyte", "monocyte"})
