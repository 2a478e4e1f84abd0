"""``cytofm triage``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import (
    CONFIG_HELP,
    OVERRIDES_HELP,
    PRINT_CONFIG_HELP,
    console,
    default,
    fail,
    info,
    make_progress,
    resolve_settings,
    user_errors,
)
from cytofm.pipeline.triage_config import TriageConfig as T

REQUIRED = {"model": "--model", "input": "--input", "out": "--out"}


@user_errors
def triage(
    ctx: typer.Context,
    overrides: Annotated[list[str] | None, typer.Argument(
        help=OVERRIDES_HELP.replace("tiling.patch_size=128 foreground.min_fraction=0.2",
                                    "adequacy.preparation=smear adequacy.min_cells=50"), show_default=False)]
    = None,
    model: Annotated[Path | None, typer.Option(help="A cell classifier: a `cytofm probe --cell-points` run "
                                                    "folder.", show_default=False)] = None,
    input: Annotated[Path | None, typer.Option(help="The cases: images, a folder, a manifest, a prepared "
                                                    "folder, or a cells store of the model's encoder.",
                                               show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder: worklist.csv, gallery.csv, differential"
                                                  ".csv, review.html, geojson/, predict's tables.",
                                             show_default=False)] = None,
    abnormal: Annotated[str | None, typer.Option(
        help="Comma-separated classes counted abnormal (default: the second class of a two-class model).",
        show_default=False)] = None,
    score: Annotated[str, typer.Option(help="A case's risk from its cells: burden (expected share of "
                                            "abnormal cells) or top (mean of its most abnormal cells).")]
    = default(T, "score"),
    top_k: Annotated[int, typer.Option(help="Cells in each case's gallery of the most abnormal.")]
    = default(T, "top_k"),
    slide_model: Annotated[Path | None, typer.Option(
        help="A probe or mil run trained on a triage's slides/counts or slides/top_cells store: its "
             "probability is the case score, its operating point the decision's.",
        show_default=False)] = None,
    first_pass: Annotated[Path | None, typer.Option(
        help="A cheap cell classifier (probe --cell-points on e.g. morphometrics features of the same "
             "cells): only each case's --candidates most abnormal cells are embedded by --model's encoder.",
        show_default=False)] = None,
    candidates: Annotated[int, typer.Option(help="Cells per case the first pass hands to the foundation "
                                                 "model.")] = default(T, "candidates"),
    threshold: Annotated[float | None, typer.Option(
        help="Operating point on the case score: below it \"no further review\".",
        show_default=False)] = None,
    operating_point: Annotated[Path | None, typer.Option(
        help="A previous triage's operating_point.json (chosen out of fold on labelled cases).",
        show_default=False)] = None,
    label: Annotated[str | None, typer.Option(
        help="Input manifest column with each case's truth: choose the operating point out of fold on "
             "these cases (written to operating_point.json).", show_default=False)] = None,
    target_sensitivity: Annotated[float, typer.Option(
        help="Sensitivity the operating point keeps (--label).")]
    = default(T, "target_sensitivity"),
    qc_share: Annotated[float, typer.Option(help="Share of \"no further review\" cases drawn for a QC "
                                                 "rescreen (seeded).")] = default(T, "qc_share"),
    seed: Annotated[int, typer.Option(help="Seed of the QC draw and of the folds.")] = default(T, "seed"),
    method: Annotated[str | None, typer.Option(help="Which saved probe of the run classifies the cells.",
                                               show_default=False)] = None,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Count cases the model or encoder has "
                                                                      "seen (flagged either way).")] = False,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """Rank cases by risk for review: worklist with decision at an operating point, QC draw, adequacy, "could
    not analyse", galleries of the most abnormal cells, and review.html for corrections.

    Example: cytofm triage --model runs/cell_probe --input new_films/ --out triage --abnormal schistocyte
    """
    cfg = resolve_settings(ctx, T, config, overrides, print_config, REQUIRED)
    from cytofm.pipeline.triage import run_triage
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(Path(cfg.out))
    for option, path in (("--model", cfg.model), ("--input", cfg.input)):
        if not Path(path).exists():
            fail(f"{option} {path}: no such file or folder")
    with make_progress() as progress:
        r = run_triage(cfg, progress=progress, log=info)
    for line in r.lines:
        console.print(line, markup=False)
    console.print(f"[green]written[/green] {r.out}/worklist.csv, gallery.csv, differential.csv; review page: "
                  f"{(r.out / 'review.html').resolve()}")
