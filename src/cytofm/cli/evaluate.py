"""``cytofm probe`` and ``cytofm mil``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, make_progress, out_console, user_errors

FOLDS = typer.Option(help="Cross-validation folds (lowered with a warning for rare classes).")
SEEDS = typer.Option(help="Comma-separated seeds; each repeats the whole k-fold.")
GROUP = typer.Option(help="Column grouping items of one specimen/patient (kept on one side of every split).")
SPLIT = typer.Option(help="Column with fixed train/test values instead of cross-validation.")


def _setup(features: Path, label: str, out: Path, group_column, split_column, folds: int, seeds: str, exclude: str):
    from cytofm.eval.splits import ProtocolError
    from cytofm.eval.tasks import prepare_eval

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        fail(f"--seeds must be comma-separated integers, not '{seeds}'")
    try:
        data, splits = prepare_eval(features, label, group_column, split_column, folds, seed_list,
                                    [x for x in exclude.split(",") if x], log=lambda m: console.print(m, markup=False),
                                    warn=lambda m: console.print(f"[yellow]warning:[/yellow] {m}"))
    except ProtocolError as e:
        fail(str(e))
    out.mkdir(parents=True, exist_ok=True)
    return data, splits


def _report(summaries: list[dict], out: Path, options: dict) -> None:
    import yaml

    from cytofm import __version__
    from cytofm.eval.run import markdown_table, results_table
    from cytofm.utils.io import write_csv

    write_csv(out / "results.csv", results_table(summaries))
    md = markdown_table(summaries)
    (out / "results.md").write_text(md)
    (out / "config.yaml").write_text(f"# written by cytofm {__version__}\n" + yaml.safe_dump(options, sort_keys=False))
    out_console.print(md)
    console.print(f"[green]written[/green] {out}/results.csv, results.md, per-fold and per-item CSVs, confusion PNGs")


@user_errors
def probe(
    features: Annotated[Path, typer.Option(help="Feature store folder (from `cytofm extract`).")],
    label: Annotated[str, typer.Option(help="Label column of the store's manifest.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    methods: Annotated[str, typer.Option(help="Comma-separated: linear, knn, fewshot.")] = "linear,knn",
    folds: Annotated[int, FOLDS] = 5,
    seeds: Annotated[str, SEEDS] = "0,1,2",
    group_column: Annotated[str | None, GROUP] = None,
    split_column: Annotated[str | None, SPLIT] = None,
    knn_k: Annotated[int, typer.Option(help="Neighbours of the kNN probe.")] = 20,
    shots: Annotated[int, typer.Option(help="Labelled examples per class for few-shot.")] = 5,
    exclude: Annotated[str, typer.Option(help="Comma-separated label values to leave out.")] = "",
) -> None:
    """Linear probe, cosine kNN and few-shot on frozen features (items mean-pooled over their instances),
    stratified k-fold x seeds, mean +- sd and 95% bootstrap CIs; per-item predictions and confusion matrices."""
    from cytofm.eval.tasks import evaluate_probes

    data, splits = _setup(features, label, out, group_column, split_column, folds, seeds, exclude)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    with make_progress() as progress:
        try:
            summaries = evaluate_probes(data, splits, out, chosen, knn_k, shots, progress)
        except ValueError as e:
            fail(str(e))
    _report(summaries, out, {"features": str(features), "label": label, "methods": chosen, "folds": folds, "seeds": seeds,
                             "group_column": group_column, "split_column": split_column, "knn_k": knn_k, "shots": shots,
                             "classes": data.classes, "n_items": len(data.y)})


@user_errors
def mil(
    features: Annotated[Path, typer.Option(help="Feature store folder (tiles mode: one bag per item).")],
    label: Annotated[str, typer.Option(help="Label column of the store's manifest.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    folds: Annotated[int, FOLDS] = 5,
    seeds: Annotated[str, SEEDS] = "0,1,2",
    group_column: Annotated[str | None, GROUP] = None,
    split_column: Annotated[str | None, SPLIT] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on an inner validation split).")] = 50,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    exclude: Annotated[str, typer.Option(help="Comma-separated label values to leave out.")] = "",
) -> None:
    """Gated attention MIL (ABMIL) over folds x seeds, class-balanced loss, early stopping; writes metrics
    with CIs, per-item predictions, confusion matrices and each item's attention (attention_<seed>.npz)."""
    from cytofm.eval.tasks import evaluate_mil

    data, splits = _setup(features, label, out, group_column, split_column, folds, seeds, exclude)
    with make_progress() as progress:
        summary = evaluate_mil(data, splits, out, epochs, lr, progress)
    _report([summary], out, {"features": str(features), "label": label, "folds": folds, "seeds": seeds,
                             "group_column": group_column, "split_column": split_column, "epochs": epochs, "lr": lr,
                             "classes": data.classes, "n_items": len(data.y)})


@user_errors
def benchmark(
    config: Annotated[str, typer.Argument(help="Benchmark YAML (tasks and encoders) or a preset: shared_data, cytofm_paper.")],
    out: Annotated[Path, typer.Option(help="Output folder: results.csv, results.md, results.png, per-task evidence.")],
    encoders: Annotated[str | None, typer.Option(help="Comma-separated encoder specs replacing the config's list.")] = None,
) -> None:
    """Compare encoders on tasks: prepare, extract (cached under OUT/cache), evaluate every encoder on the
    same folds x seeds (grouped by near-duplicate images), and write one table: means with 95% CIs
    (corrected resampled t), the config's claimed comparisons with paired CIs and Holm-adjusted p-values,
    the near-duplicates found, and a mark on rows of encoders that saw the test images in pretraining.

    Relative data paths are read relative to the YAML file (for a preset: the current folder; for the
    `demo` preset: the sample shipped in the package).
    """
    from cytofm.config.loader import build_config, write_config
    from cytofm.eval.benchmark import BenchmarkConfig, run_benchmark

    values = {"encoders": [e for e in encoders.split(",") if e]} if encoders else None
    cfg = build_config(BenchmarkConfig, "benchmark", config, values=values)
    if Path(config).is_file():
        base = Path(config).resolve().parent
    elif config == "demo":  # the sample shipped inside the package
        from cytofm.cli.demo import demo_data_dir

        base = demo_data_dir()
    else:
        base = Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out / "config.yaml")
    with make_progress() as progress:
        run_benchmark(cfg, base, out, progress, log=lambda m: progress.console.print(m, markup=False, soft_wrap=True))
    out_console.print((out / "results.md").read_text())
    console.print(f"[green]written[/green] {out}/results.csv, comparisons.csv, results.md, results.png")
