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
    minutes: Annotated[float, typer.Option(help="Wall-time budget of the pretraining stage (the rest takes ~4 min on 2 cores).")] = 3.0,
    iterations: Annotated[int, typer.Option(help="Pretraining iterations (the schedule length; stopped early by --minutes).")] = 120,
) -> None:
    """Run the whole pipeline on the shipped blood-smear sample (BCCD and Chula RBC-12 fields from the
    evaluation part of the shipped split; MIT licences, see demo_data/*/LICENSE) and write OUT/report.html.

    Prints, first, which encoder did best on which task and whether the shipped encoder beats each other
    encoder (paired 95% intervals), then the full table."""
    from cytofm.pipeline.demo import DemoError, run_demo

    with make_progress() as progress:
        def stage(m):
            info(f"== {m}")

        try:
            r = run_demo(out, minutes, iterations, progress, info, stage)
        except DemoError as e:
            fail(str(e), code=1)
    out_console.print("\n## What the demo found\n", markup=False)
    for line in r.summary:
        out_console.print(f"- {line}", markup=False, soft_wrap=True)
    out_console.print("", markup=False)
    out_console.print(r.results_md, markup=False, soft_wrap=True)
    console.print(f"[green]demo finished[/green] in {r.seconds:.0f} s; report: {r.report.resolve()}", soft_wrap=True)
