"""The demo's last stage, a screen as a haematology lab would run it: which of the sample's new blood-film
fields hold schistocytes? A red-cell classifier is trained on the detected cells of the red-cell task's
labelled chula_rbc12 fields (their morphometrics: cheap enough for the demo's budget; `probe --cell-points`'s
path), then `triage` ranks the demo-pretraining chula fields (unlabelled, unseen by the shipped encoder) and
writes the worklist, the galleries and review.html, which the demo names and does not open."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

CHULA_MPP = 0.19
"""chula_rbc12's resolution (a 7.5 um red cell at its median labelled size; docs/benchmarks/cells.md)."""
RARE = ("uncategorised", "stomatocyte", "elliptocyte")
"""Classes on too few of the sample's fields for folds by field (as the demo's red-cell task leaves out)."""


def _inputs(root: Path, plan: Path) -> tuple[Path, Path, Path]:
    """The labelled fields and their points, and the new fields, as tables with the resolution."""
    from cytofm.utils.io import write_csv

    chula = root / "chula_rbc12"
    with open(chula / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    with open(chula / "pretrain.csv", newline="") as f:
        new = [r["image"] for r in csv.DictReader(f)]
    fields = sorted({c["image"] for c in cells})
    plan.mkdir(parents=True, exist_ok=True)
    labelled = write_csv(plan / "labelled_fields.csv",
                         [{"image": str(chula / f), "mpp": CHULA_MPP} for f in fields])
    points = write_csv(plan / "cell_points.csv", [{"image": str(chula / c["image"]), "x": c["x"], "y": c["y"],
                                                  "type": c["type"]} for c in cells])
    fresh = write_csv(plan / "new_fields.csv", [{"image": str(chula / f), "mpp": CHULA_MPP} for f in new])
    return labelled, points, fresh


def _cell_classifier(labelled: Path, points: Path, run: Path, progress, log) -> Path:
    """prepare --cells, extract --mode cells (morphometrics), probe --cell-points (linear), saved."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.eval.cell_labels import label_detected_cells
    from cytofm.eval.config import ProbeConfig
    from cytofm.eval.evaluate_store import evaluate_probes, prepare_eval
    from cytofm.eval.saved_probe import save_probe_run
    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    if (run / "model.json").is_file():
        return run
    quiet = lambda m: None  # noqa: E731 - the demo says what each stage does; the steps' lines are detail
    pcfg = build_config(PrepareConfig, "prepare", "smear_cells", values={"output": {"qa_thumbnails": 0}})
    run_prepare([str(labelled)], run / "prepared", pcfg, progress=progress, log=quiet)
    run_extract(create_encoder("morphometrics"), ExtractConfig(input=str(run / "prepared"), mode="cells",
                                                               out=str(run / "features")),
                progress=progress, log=quiet)
    cfg = ProbeConfig(features=str(run / "features"), label="type", out=str(run), folds=3, seeds=[0],
                      group_column="field", exclude=list(RARE), methods=["linear"], cell_points=str(points),
                      group_duplicates=False)
    label_detected_cells(run / "features", points, "type", run / "cells", RARE, log=quiet)
    data, splits = prepare_eval(run / "cells", "type", "field", None, 3, (0,), list(RARE), log=quiet,
                                warn=log, group_duplicates=False, out=run)
    with warnings.catch_warnings():  # a fold without a rare class: scikit-learn's note, not the user's
        warnings.simplefilter("ignore", UserWarning)
        summaries = evaluate_probes(data, splits, run, ("linear",), progress=progress, save_models=True,
                                    log=quiet)
    save_probe_run(run / "cells", run, data, summaries, cfg)
    return run


def demo_triage(root: Path, out: Path, progress=None, log=print) -> list[str]:
    """The stage's summary lines (the review page's path among them)."""
    from cytofm.pipeline.triage import run_triage
    from cytofm.pipeline.triage_config import TriageConfig

    labelled, points, fresh = _inputs(root, out / "plan" / "chula_triage")
    model = _cell_classifier(labelled, points, out / "red_cell_classifier", progress, log)
    cfg = TriageConfig(model=str(model), input=str(fresh), out=str(out / "triage"), abnormal=["schistocyte"],
                       top_k=12)
    r = run_triage(cfg, progress=progress, log=lambda m: None)
    review = [w for w in r.worklist if w["decision"] != "could not analyse"]
    top = ", ".join(f"{w['case']} ({w['score']:.2f})" for w in review[:3])
    page = out / "triage" / "review.html"
    line = (f"triage: {len(r.worklist)} new blood-film fields ranked for schistocytes by a red-cell "
            f"classifier on the detected cells (morphometrics); highest burden {top}; worklist.csv, "
            f"galleries and the review page {page} (open it in a browser; nothing was opened)")
    log(line)
    return [line]
