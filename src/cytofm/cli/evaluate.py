"""``cytofm probe`` and ``cytofm mil``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from cytofm.cli.common import console, fail, make_progress, out_console, user_errors

FOLDS = typer.Option(help="Cross-validation folds (lowered with a warning for rare classes).")
SEEDS = typer.Option(help="Comma-separated seeds; each repeats the whole k-fold.")
GROUP = typer.Option(help="Column grouping items of one specimen/patient (kept on one side of every split).")
SPLIT = typer.Option(help="Column with fixed train/test values instead of cross-validation.")


def _setup(features: Path, label: str, out: Path, group_column, split_column, folds: int, seeds: str, exclude: str):
    from cytofm.eval.data import load_labelled_store
    from cytofm.eval.splits import ProtocolError, make_splits

    data = load_labelled_store(str(features), label, group_column, split_column,
                               tuple(x for x in exclude.split(",") if x), log=lambda m: console.print(m, markup=False))
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        fail(f"--seeds must be comma-separated integers, not '{seeds}'")
    try:
        splits = make_splits(data.y, folds, seed_list, data.groups, data.fixed,
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
    from cytofm.eval.probes import few_shot, knn_probe, linear_probe
    from cytofm.eval.run import run_method

    data, splits = _setup(features, label, out, group_column, split_column, folds, seeds, exclude)
    x, n_c = data.pooled(), len(data.classes)
    table = {
        "linear": lambda tr, te, sp: (linear_probe(x[tr], data.y[tr], x[te], n_c, sp.seed), None),
        "knn": lambda tr, te, sp: (knn_probe(x[tr], data.y[tr], x[te], n_c, knn_k), None),
        "fewshot": lambda tr, te, sp: (few_shot(x[tr], data.y[tr], x[te], n_c, shots, seed=sp.seed), None),
    }
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in chosen if m not in table]
    if bad:
        fail(f"unknown probe method(s) {bad}; valid: {', '.join(table)}")
    with make_progress() as progress:
        summaries = [run_method(m if m != "fewshot" else f"fewshot{shots}", data, splits, table[m], out, progress)
                     for m in chosen]
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
    import torch

    from cytofm.eval.run import run_method
    from cytofm.eval.splits import inner_validation
    from cytofm.mil.train import MILTrainConfig, predict, train_abmil

    data, splits = _setup(features, label, out, group_column, split_column, folds, seeds, exclude)
    bags = [torch.from_numpy(b) for b in data.bags]
    n_c = len(data.classes)
    attention: dict[int, dict[str, np.ndarray]] = {}

    def method(tr, te, sp):
        itr, ival = inner_validation(data.y[tr], sp.seed)
        cfg = MILTrainConfig(epochs=epochs, lr=lr, seed=sp.seed)
        model = train_abmil([bags[i] for i in tr[itr]], data.y[tr[itr]], [bags[i] for i in tr[ival]], data.y[tr[ival]], n_c, cfg)
        proba, attn = predict(model, [bags[i] for i in te])
        for i, a in zip(te, attn, strict=True):
            attention.setdefault(sp.seed, {})[data.ids[i]] = a
        return proba, attn

    with make_progress() as progress:
        summary = run_method("abmil", data, splits, method, out, progress)
    for seed, d in attention.items():
        np.savez_compressed(out / f"attention_{seed}.npz", **d)
    _report([summary], out, {"features": str(features), "label": label, "folds": folds, "seeds": seeds,
                             "group_column": group_column, "split_column": split_column, "epochs": epochs, "lr": lr,
                             "classes": data.classes, "n_items": len(data.y)})
