"""``cytofm demo``: the whole system on the real sample shipped with the package (``cytofm.pipeline.demo``):
prepare -> pretrain a fresh encoder on one part of the sample -> benchmark the shipped encoder, the fresh one,
random init and hand-crafted features on the other part -> attention maps -> UMAP -> report.html.
A second run reuses every finished stage, evaluation included."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, info, make_progress, out_console, user_errors


@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("cytofm-demo"),
    minutes: Annotated[float | None, typer.Option(help="Wall-time limit of the pretraining "
                                                       "stage (default: twice its planned time).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Pretraining iterations (default: as "
                                                        "many as fit the budget, at most 120).")] = None,
    full: Annotated[bool, typer.Option("--full", help="The whole sample and the full 120-iteration "
                                                      "schedule, however long this machine takes.")] = False,
    budget_minutes: Annotated[float, typer.Option(help="The time the demo sizes itself to "
                                                       "(measured on this machine first).")] = 9.0,
) -> None:
    """Run the whole pipeline on the shipped blood-smear sample (BCCD and Chula RBC-12 fields from the
    evaluation part of the shipped split; MIT licences, see demo_data/*/LICENSE) and write OUT/report.html.

    It measures the machine first (a few forward and training steps) and sizes the pretraining and the
    number of cells and fields to the budget, saying what it chose and why.

    Prints, first, which encoder did best on which task and whether the shipped encoder beats each other
    encoder (paired 95% intervals), then the full table."""
    from cytofm.pipeline.demo import DemoError, run_demo

    with make_progress() as progress:
        def stage(m):
            info(f"== {m}")

        try:
            r = run_demo(out, minutes, iterations, progress, info, stage, full, budget_minutes)
        except DemoError as e:
            fail(str(e), code=1)
    out_console.print("\n## What the demo found\n", markup=False)
    for line in r.summary:
        out_console.print(f"- {line}", markup=False, soft_wrap=True)
    out_console.print("", markup=False)
    out_console.print(r.results_md, markup=False, soft_wrap=True)
    console.print(f"[green]demo finished[/green] in {r.seconds:.0f} s; report: {r.report.resolve()}",
                  soft_wrap=True)
