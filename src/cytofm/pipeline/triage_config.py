"""Typed settings of ``cytofm triage`` (``--config FILE``, ``key=value``; the options' defaults come from
here) and the checks of the models they name. The thresholds are defaults for research: a lab validates
its own before it relies on them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cytofm.config.loader import Section
from cytofm.eval.adequacy import AdequacyConfig
from cytofm.eval.cell_burden import SCORES
from cytofm.eval.config import CommaList
from cytofm.utils.errors import UserError


class TriageError(UserError, ValueError):
    """A model or setting triage cannot work with."""


class TriageConfig(Section):
    model: str | None = None
    input: str | None = None
    out: str | None = None
    method: str | None = None
    """A probe run: which saved probe classifies the cells (default: the run's first)."""
    use: Literal["ensemble", "refit"] = "ensemble"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    abnormal: CommaList = []
    """The classes counted abnormal (a case's risk is built from them); default: every class but the
    first of a two-class model, else refused until named."""
    score: Literal[SCORES] = "burden"
    """How a case's risk is read from its cells: burden (expected share of abnormal cells) or top (the mean
    abnormal probability of its ``score_cells`` most abnormal cells)."""
    score_cells: int = Field(3, ge=1)
    top_k: int = Field(30, ge=1)
    """Cells in each case's gallery of the most abnormal."""
    class_gallery: int = Field(12, ge=0)
    """Cells shown per class (the most confident), and in the unidentified bin (the least)."""
    unidentified_below: float = Field(0.5, ge=0, le=1)
    """A cell whose most probable class is below this is put in the unidentified bin (CellaVision's)."""
    slide_model: str | None = None
    """A ``probe`` or ``mil`` run trained on a triage's ``slides/counts`` or ``slides/top_cells`` store: the
    case score is its probability of the positive class, the operating point its own (chosen out of fold)."""
    threshold: float | None = None
    """The operating point on the case score: at or above it "review", below it "no further review"."""
    operating_point: str | None = None
    """A previous triage's operating_point.json (its threshold, chosen out of fold on labelled cases)."""
    label: str | None = None
    """A column of the input's manifest holding the case's truth: the operating point is then chosen
    out of fold on these cases for ``target_sensitivity`` and written to operating_point.json."""
    positive: CommaList = ["1", "true", "yes", "positive", "abnormal"]
    """The label values that make a case positive (compared without case); other non-empty values are
    negative, empty ones unlabelled."""
    target_sensitivity: float = Field(0.95, gt=0, le=1)
    folds: int = Field(5, ge=2)
    qc_share: float = Field(0.1, ge=0, le=1)
    """Share of the "no further review" cases drawn for a QC rescreen (FocalPoint draws up to 15%)."""
    seed: int = 0
    include_seen: bool = False
    first_pass: str | None = None
    """A cheap cell classifier (a ``probe --cell-points`` run on e.g. ``morphometrics`` features of the same
    prepared cells): it classifies every cell, and only each case's ``candidates`` most abnormal are embedded
    by --model's encoder (for slides of many thousand cells)."""
    candidates: int = Field(500, ge=1)
    crop_px: int = Field(64, ge=16, le=256)
    adequacy: AdequacyConfig = AdequacyConfig()


def abnormal_classes(classes: list[str], named: list[str]) -> list[int]:
    """The indices of the abnormal classes: those named (each must be one of the model's), or the second
    of a two-class model."""
    if named:
        unknown = [c for c in named if c not in classes]
        if unknown:
            raise TriageError(f"abnormal class(es) {', '.join(unknown)} not among the model's classes "
                              f"({', '.join(classes)})")
        return [classes.index(c) for c in named]
    if len(classes) == 2:
        return [1]
    raise TriageError(f"the model has {len(classes)} classes ({', '.join(classes)}): name the abnormal ones "
                      "with --abnormal CLASS[,CLASS]")


def check_cell_model(model, where: Path) -> None:
    """Refuse a model that does not classify single cells (a ``SavedModel``), with the fix."""
    if not model.reads_cells:
        raise TriageError(f"{where}: this {model.kind} model classifies whole fields or slides, and "
                          "galleries need a cell classifier: train one with `cytofm probe --cell-points "
                          "TABLE` on a store extracted with `--mode cells`, and give that run as --model")
