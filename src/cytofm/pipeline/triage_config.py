"""Typed settings of ``cytofm triage`` (``--config FILE``, ``key=value``; the options' defaults come from
here). The thresholds are defaults for research: a lab validates its own before it relies on them."""

from __future__ import annotations

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
    crop_px: int = Field(64, ge=16, le=256)
    adequacy: AdequacyConfig = AdequacyConfig()

