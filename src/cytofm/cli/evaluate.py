"""``cytofm probe`` and ``cytofm mil``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import (
    CONFIG_HELP,
    OVERRIDES_HELP,
    PRINT_CONFIG_HELP,
    choices,
    console,
    default,
    fail,
    info,
    make_progress,
    out_console,
    resolve_settings,
    split_overrides,
    user_errors,
    warn,
)
from cytofm.config.loader import config_dict
from cytofm.eval.config import MilConfig, ProbeConfig
from cytofm.eval.probe_registry import PROBES
from cytofm.mil.registry import MIL_MODELS

FOLDS = typer.Option(help="Cross-validation folds (lowered with a warning for rare classes).")
SEEDS = typer.Option(help="Comma-separated seeds; each repeats the whole k-fold.")
GROUP = typer.Option(help="Column grouping items of one specimen/patient (kept on one side of every split).")
SPLIT = typer.Option(help="Column with fixed train/test values instead of cross-validation.")
DUPLICATES = typer.Option("--group-duplicates/--no-group-duplicates",
                          help="Keep near-duplicate source images on one side of every split, as `benchmark` "
                               "does (the pairs in OUT/duplicates.csv).")


def _setup(cfg, features: Path, out: Path):
    """The labelled items and their splits; a positive class that is not one of the task's is refused
    before anything is trained."""
    from cytofm.eval.evaluate_store import prepare_eval
    from cytofm.eval.saved_model import positive_index
    from cytofm.eval.splits import ProtocolError
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(out)
    try:
        data, splits = prepare_eval(features, cfg.label, cfg.group_column, cfg.split_column, cfg.folds,
                                    tuple(cfg.seeds), list(cfg.exclude), log=info, warn=warn,
                                    group_duplicates=cfg.group_duplicates, out=out)
        positive_index(list(data.classes), cfg.positive_class)
    except (ProtocolError, ValueError) as e:
        fail(str(e))
    out.mkdir(parents=True, exist_ok=True)
    return data, splits


def _report(summaries: list[dict], out: Path, options: dict) -> None:
    import yaml

    from cytofm import __version__
    from cytofm.eval.cross_validation import markdown_table, results_table
    from cytofm.utils.io import write_csv

    write_csv(out / "results.csv", results_table(summaries))
    md = markdown_table(summaries)
    (out / "results.md").write_text(md)
    (out / "config.yaml").write_text(f"# written by cytofm {__version__}\n"
                                     + yaml.safe_dump(options, sort_keys=False))
    out_console.print(md, markup=False)
    console.print(f"[green]written[/green] {out}/results.csv, results.md, per-fold and per-item CSVs, "
                  "confusion PNGs")


P, M = ProbeConfig, MilConfig
MilModel = choices("MilModel", MIL_MODELS.names())
MIL_MODEL_HELP = MIL_MODELS.help()
PROBES_HELP = f"Comma-separated: {PROBES.help()}."
REQUIRED = {"features": "--features DIR", "label": "--label COLUMN", "out": "--out DIR"}
FEATURES = typer.Option(help="Feature store folder (from `cytofm extract`).", show_default=False)
LABEL = typer.Option(help="Label column of the store's manifest.", show_default=False)
OUT = typer.Option(help="Output folder.", show_default=False)
OVERRIDES = typer.Argument(help=OVERRIDES_HELP.replace("tiling.patch_size=128 foreground.min_fraction=0.2",
                                                       "folds=10 seeds=0,1,2,3,4"), show_default=False)


def _title(features: Path, label: str) -> str:
    """Which encoder on which task, for the figures: the store's encoder spec and the label column."""
    import json

    from cytofm.utils.display import display_name

    try:
        spec = json.loads((features / "store.json").read_text()).get("encoder", "")
    except (OSError, ValueError):
        spec = ""
    return f"{display_name(spec) or features.name} on {label}"


@user_errors
def probe(
    ctx: typer.Context,
    overrides: Annotated[list[str] | None, OVERRIDES] = None,
    features: Annotated[Path | None, FEATURES] = None,
    label: Annotated[str | None, LABEL] = None,
    out: Annotated[Path | None, OUT] = None,
    methods: Annotated[str, typer.Option(help=PROBES_HELP)] = ",".join(default(P, "methods")),
    folds: Annotated[int, FOLDS] = default(P, "folds"),
    seeds: Annotated[str, SEEDS] = ",".join(map(str, default(P, "seeds"))),
    group_column: Annotated[str | None, GROUP] = default(P, "group_column"),
    split_column: Annotated[str | None, SPLIT] = default(P, "split_column"),
    group_duplicates: Annotated[bool, DUPLICATES] = default(P, "group_duplicates"),
    knn_k: Annotated[int, typer.Option(help="Neighbours of the kNN probe.")] = default(P, "knn_k"),
    shots: Annotated[int, typer.Option(help="Labelled examples per "
                                            "class for few-shot.")] = default(P, "shots"),
    exclude: Annotated[str, typer.Option(help="Comma-separated label values to leave out.")] = "",
    refit: Annotated[bool, typer.Option("--refit", help="Also fit each saved probe on every labelled item "
                                                        "(`cytofm predict --use refit`).")] = False,
    target_sensitivity: Annotated[float, typer.Option(
        help="Two-class tasks: the operating point in model.json keeps this sensitivity out of fold.")]
        = default(P, "target_sensitivity"),
    positive_class: Annotated[str | None, typer.Option(
        help="Two-class tasks: the class the operating point screens for (default: the second in sorted "
             "order).", show_default=False)] = None,
    cell_points: Annotated[Path | None, typer.Option(
        help="Classify cells: a table of labelled cells (image, x, y, label column) matched to the detected "
             "cells of a --mode cells store.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """Linear probe, cosine kNN and few-shot on frozen features (items mean-pooled over their instances),
    stratified k-fold x seeds: mean +- sd, 95% CIs (corrected resampled t), predictions, confusion matrices.

    Example: cytofm probe --features feats --label label --out probe methods=linear,knn,fewshot
    """
    cfg = resolve_settings(ctx, P, config, overrides, print_config, REQUIRED)
    from cytofm.eval.evaluate_store import evaluate_probes

    features, out = Path(cfg.features), Path(cfg.out)
    if cfg.cell_points:
        features = _cells_store(features, Path(cfg.cell_points), cfg, out)
    data, splits = _setup(cfg, features, out)
    with make_progress() as progress:
        try:
            summaries = evaluate_probes(data, splits, out, cfg.methods, cfg.knn_k, cfg.shots, progress,
                                        title=_title(features, cfg.label), save_models=True, log=info)
        except ValueError as e:
            fail(str(e))
    _report(summaries, out, {**config_dict(cfg), "classes": data.classes, "n_items": len(data.y)})
    _save_probes(cfg, features, out, data, summaries)


def _cells_store(features: Path, points: Path, cfg, out: Path) -> Path:
    """``OUT/cells``: the store's detected cells matched to the labelled points, each an item grouped by
    its field (unless another group column is given)."""
    from cytofm.eval.cell_labels import label_detected_cells

    label_detected_cells(features, points, cfg.label, out / "cells", tuple(cfg.exclude), log=info)
    cfg.group_column = cfg.group_column or "field"
    return out / "cells"


def _save_probes(cfg, features: Path, out: Path, data, summaries: list[dict]) -> None:
    from cytofm.eval.saved_probe import save_probe_run

    path, saved, refits = save_probe_run(features, out, data, summaries, cfg)
    if path is None:
        return  # few-shot alone: nothing to apply later
    console.print(f"[green]saved[/green] the {', '.join(saved)} probes of every fold x seed"
                  + (" and refit on every item" if refits else "")
                  + f": {path} (apply with `cytofm predict`)")


@user_errors
def mil(
    ctx: typer.Context,
    overrides: Annotated[list[str] | None, OVERRIDES] = None,
    features: Annotated[Path | None, typer.Option(help="Feature store folder (tiles mode: "
                                                       "one bag per item).", show_default=False)] = None,
    label: Annotated[str | None, LABEL] = None,
    out: Annotated[Path | None, OUT] = None,
    folds: Annotated[int, FOLDS] = default(M, "folds"),
    seeds: Annotated[str, SEEDS] = ",".join(map(str, default(M, "seeds"))),
    group_column: Annotated[str | None, GROUP] = default(M, "group_column"),
    split_column: Annotated[str | None, SPLIT] = default(M, "split_column"),
    group_duplicates: Annotated[bool, DUPLICATES] = default(M, "group_duplicates"),
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping "
                                             "on an inner validation split).")] = default(M, "epochs"),
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = default(M, "lr"),
    model: Annotated[MilModel, typer.Option(help=MIL_MODEL_HELP)] = default(M, "model"),
    threads: Annotated[int | None, typer.Option(
        help="Torch threads for training (default: sized to the model, one for small ones; OMP_NUM_THREADS "
             "is obeyed too).", show_default=False)] = None,
    exclude: Annotated[str, typer.Option(help="Comma-separated label values to leave out.")] = "",
    refit: Annotated[bool, typer.Option("--refit", help="Also train one model on every labelled item "
                                                        "(`cytofm predict --use refit`).")] = False,
    target_sensitivity: Annotated[float, typer.Option(
        help="Two-class tasks: the operating point in model.json keeps this sensitivity out of fold.")]
        = default(M, "target_sensitivity"),
    positive_class: Annotated[str | None, typer.Option(
        help="Two-class tasks: the class the operating point screens for (default: the second in sorted "
             "order).", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """Attention MIL (gated ABMIL, or TransMIL with --model transmil) over folds x seeds, class-balanced loss,
    early stopping; writes metrics
    with CIs, per-item predictions, confusion matrices and each item's attention (attention_<seed>.npz).

    Example: cytofm mil --features bags --label wbc_type --out mil epochs=30
    """
    cfg = resolve_settings(ctx, M, config, overrides, print_config, REQUIRED)
    from cytofm.eval.evaluate_store import evaluate_mil

    features, out = Path(cfg.features), Path(cfg.out)
    data, splits = _setup(cfg, features, out)
    with make_progress() as progress:
        summary = evaluate_mil(data, splits, out, cfg.epochs, cfg.lr, progress,
                               title=_title(features, cfg.label), model=cfg.model, save_models=True,
                               threads=cfg.threads, log=info)
    _report([summary], out, {**config_dict(cfg), "classes": data.classes, "n_items": len(data.y)})
    _save_model(cfg, features, out, data, summary)


def _save_model(cfg, features: Path, out: Path, data, summary: dict) -> None:
    """``model.json`` beside the fold x seed models, and the refit model when asked."""
    from cytofm.eval.saved_model import save_mil_run

    path, refit = save_mil_run(features, out, data, summary, cfg)
    console.print(f"[green]saved[/green] {len(summary['_members'])} model(s)"
                  + (" and the refit model" if refit else "") + f": {path} (apply with `cytofm predict`)")


@user_errors
def benchmark(
    config: Annotated[str, typer.Argument(help="Benchmark YAML (tasks and encoders) or a "
                                               "preset: shared_data, cytofm_paper, demo.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Overrides on top of CONFIG as key=value, "
                                                               "e.g. batch_size=32 metric=macro_f1 "
                                                               "'encoders=[cytofm, handcrafted]'.",
                                                          show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder: results.csv, "
                                                  "results.md, summary.md, results.png, "
                                                  "per-task evidence.", show_default=False)] = None,
    encoders: Annotated[str | None, typer.Option(help="Comma-separated encoder specs "
                                                      "replacing the config's list.")] = None,
    keep_going: Annotated[bool, typer.Option(
        "--keep-going",
        help="Go on past an encoder that cannot be built or a task that cannot be evaluated; "
             "they are listed in results.md and summary.md (config: skip_missing).")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """Compare encoders on tasks: prepare, extract (cached under OUT/cache), evaluate every encoder on the
    same folds x seeds (grouped by near-duplicate images), and write one table: means with 95% CIs
    (corrected resampled t), the config's claimed comparisons with paired CIs and Holm-adjusted p-values,
    the near-duplicates found, a mark on rows of encoders that saw the test images in pretraining, and
    summary.md: the result in plain words. A re-run reuses every finished extraction and evaluation.

    Relative data paths are read relative to the YAML file (for a preset: the current folder; for the
    `demo` preset: the sample shipped in the package).
    """
    import yaml

    from cytofm.config.loader import build_config, write_config
    from cytofm.eval.config import BenchmarkConfig
    from cytofm.pipeline.benchmark import run_benchmark

    values = {"encoders": [e for e in encoders.split(",") if e]} if encoders else None
    paths, overrides = split_overrides(overrides)
    if paths:
        fail(f"not a key=value override: {paths[0]} (CONFIG is the first argument)")
    if keep_going:
        values = {**(values or {}), "skip_missing": True}
    cfg = build_config(BenchmarkConfig, "benchmark", config, overrides, values=values)
    if print_config:
        out_console.print(yaml.safe_dump(config_dict(cfg), sort_keys=False).rstrip(), markup=False)
        raise typer.Exit()
    if out is None:
        fail("give --out DIR")
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(out)
    if Path(config).is_file():
        base = Path(config).resolve().parent
    elif config == "demo":  # the sample shipped inside the package
        from cytofm.pipeline.demo import demo_data_dir

        base = demo_data_dir()
    else:
        base = Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out / "config.yaml")
    with make_progress() as progress:
        run_benchmark(cfg, base, out, progress, log=info)
    summary = out / "summary.md"
    if summary.is_file():
        out_console.print(summary.read_text(), markup=False)
    out_console.print((out / "results.md").read_text(), markup=False)
    console.print(f"[green]written[/green] {out}/results.csv, comparisons.csv, results.md, "
                  "summary.md, results.png")
