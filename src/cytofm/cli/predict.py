"""``cytofm predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import choices, console, fail, info, make_progress, user_errors
from cytofm.eval.config import PREDICT_USES
from cytofm.features.config import DEVICES

Use = choices("Use", PREDICT_USES)
Device = choices("Device", DEVICES)


@user_errors
def predict(
    model: Annotated[Path, typer.Option("--model", help="A `cytofm mil` or `cytofm probe` run folder "
                                                        "(model.json and models/).",
                                        show_default=False)],
    input: Annotated[Path, typer.Option("--input", help="Images, a folder, a manifest, a prepared folder, or "
                                                        "a feature store of the model's encoder.",
                                        show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder: predictions.csv, specimens.csv, summary, "
                                                    "attention.h5, heatmaps/.", show_default=False)],
    use: Annotated[Use, typer.Option(help="ensemble: the cross-validation models, mean and spread; "
                                          "refit: the model trained on every item (`mil --refit`).")]
    = "ensemble",
    include_seen: Annotated[bool, typer.Option(
        "--include-seen", help="Count items the model or the encoder has seen in the metrics (flagged either "
                               "way).")] = False,
    heatmaps: Annotated[int, typer.Option(help="Attention heatmaps for at most this many items "
                                               "(0: none).")] = 12,
    method: Annotated[str | None, typer.Option(help="A probe run: which saved probe to apply (linear, knn; "
                                                    "default: the run's first).", show_default=False)] = None,
    device: Annotated[Device, typer.Option(help="Where the encoder runs when the input is extracted "
                                             "(auto, cpu, cuda).")] = "auto",
) -> None:
    """Apply a trained MIL model or probe to new cases: prepare and extract with the model's settings and
    encoder, then predictions with the ensemble's spread, specimen totals, leakage flags and heatmaps.

    Example: cytofm predict --model runs/mil --input new_fields/ --out predictions
    """
    from cytofm.pipeline.predict import run_predict
    from cytofm.utils.distributed import torchrun_group
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(out)
    if not model.is_dir():
        fail(f"--model {model}: not a folder")
    if not input.exists():
        fail(f"--input {input}: no such file or folder")
    device = getattr(device, "value", device)
    with torchrun_group(device), make_progress() as progress:
        r = run_predict(model, input, out, getattr(use, "value", use), include_seen, heatmaps,
                        progress=progress, log=info, method=method, device=device)
    if r is None:  # another process of a torchrun: its share is extracted, rank 0 applies the model
        return
    for line in r.lines:
        console.print(line)
    console.print(f"[green]written[/green] {out}/predictions.csv, specimens.csv, summary.md")
