"""Specimen adequacy from the detected cells, as a screener reports it: how many cells are well segmented,
what share of the cell area is out of focus and what share is obscured (clumps, overlap), and a verdict,
satisfactory / limited / unsatisfactory, with the reasons; a case whose cells are mostly out of focus, or in
which no cell was found, cannot be analysed at all (a process failure, never a negative).

The thresholds depend on the preparation (a single microscope field, a blood film, a cervical liquid-based
slide), so each preparation has its defaults, each with its source below; every one can be set in the
config. Counts come from a detector and are estimates: the worklist and the review page say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from cytofm.config.loader import Section

ESTIMATE_NOTE = ("Cell counts, adequacy and galleries come from an automatic detector and classifier: they "
                 "are estimates, and the thresholds are defaults for research that a lab validates before "
                 "relying on them.")

PREPARATIONS = {
    # One microscope field (a 100x oil field of a blood film holds a few dozen red cells): cytofm's choice,
    # so that a field with a handful of cells is not read as a case.
    "field": {"min_cells": 10, "limited_cells": 20},
    # A blood film read as a whole: the manual differential counts 100 white cells (200 for a better
    # estimate); the same counts of cells here (ICSH 2014 recommendations for the peripheral blood film).
    "smear": {"min_cells": 100, "limited_cells": 200},
    # A cervical liquid-based slide: at least 5,000 well-visualised squamous cells (The Bethesda System
    # 2014); fewer than 8,000 (the minimum for a conventional smear) is reported as limited here.
    "pap": {"min_cells": 5000, "limited_cells": 8000},
}
"""Cell counts by preparation: below ``min_cells`` unsatisfactory, below ``limited_cells`` limited."""


class AdequacyConfig(Section):
    preparation: str = Field("field", pattern="^(field|smear|pap)$")
    """Which defaults of ``PREPARATIONS`` apply to the counts (field, smear, pap)."""
    min_cells: int | None = Field(None, ge=0)
    limited_cells: int | None = Field(None, ge=0)
    min_cell_focus: float = Field(0.2, ge=0)
    """A cell scoring below this is out of focus: 0.20 is a step edge under a Gaussian blur of 2 px at the
    working resolution (``cytofm.data.prepare.focus``)."""
    min_seg_confidence: float = Field(0.5, ge=0, le=1)
    """A cell is well segmented where at least this share of its outline lies on glass
    (``seg_confidence``); clumps score 0."""
    limited_out_of_focus: float = Field(0.25, ge=0, le=1)
    """More of the cell area out of focus than this: limited (cytofm's choice)."""
    max_out_of_focus: float = Field(0.75, ge=0, le=1)
    """More than this: the case cannot be analysed, "mostly out of focus" (cytofm's choice)."""
    limited_obscured: float = Field(0.5, ge=0, le=1)
    """More of the cell area obscured (clumps, overlapping cells) than this: limited (Bethesda: 50-75%
    obscured is reported)."""
    max_obscured: float = Field(0.75, ge=0, le=1)
    """More than this: unsatisfactory (Bethesda: more than 75% of the cells obscured)."""

    def counts(self) -> tuple[int, int]:
        d = PREPARATIONS[self.preparation]
        return (d["min_cells"] if self.min_cells is None else self.min_cells,
                d["limited_cells"] if self.limited_cells is None else self.limited_cells)


@dataclass
class Adequacy:
    n_cells: int
    n_well_segmented: int
    out_of_focus_share: float  # of the cell area
    obscured_share: float  # of the cell area
    verdict: str  # satisfactory | limited | unsatisfactory | "" (not analysed)
    reasons: list[str] = field(default_factory=list)
    not_analysed: str = ""  # why the case cannot be analysed at all

    def row(self) -> dict:
        return {"n_cells": self.n_cells, "n_well_segmented": self.n_well_segmented,
                "out_of_focus_share": round(self.out_of_focus_share, 4),
                "obscured_share": round(self.obscured_share, 4), "adequacy": self.verdict,
                "adequacy_reasons": "; ".join(self.reasons)}


def assess(area: np.ndarray, focus: np.ndarray, seg_confidence: np.ndarray, clump: np.ndarray,
           cfg: AdequacyConfig) -> Adequacy:
    """One case's adequacy from its cells' areas, focus scores, segmentation confidences and clump flags.
    Shares are of the summed cell area (a clump counts by its area, not as one cell); a missing focus or
    confidence (NaN, files from before they existed) counts as in focus and well segmented."""
    area = np.asarray(area, float)
    n = len(area)
    if n == 0:
        return Adequacy(0, 0, 0.0, 0.0, "", ["no cell found"], "no cells found")
    total = float(area.sum()) or 1.0
    blurred = np.nan_to_num(np.asarray(focus, float), nan=np.inf) < cfg.min_cell_focus
    obscured = np.asarray(clump, bool)
    well = ~obscured & ~blurred & (np.nan_to_num(np.asarray(seg_confidence, float), nan=1.0)
                                   >= cfg.min_seg_confidence)
    a = Adequacy(n, int(well.sum()), float(area[blurred].sum() / total), float(area[obscured].sum() / total),
                 "satisfactory")
    if a.out_of_focus_share > cfg.max_out_of_focus:
        a.verdict, a.not_analysed = "", f"mostly out of focus ({a.out_of_focus_share:.0%} of the cell area)"
        a.reasons.append(a.not_analysed)
        return a
    low, limited = cfg.counts()
    worst = [(a.n_well_segmented < low, f"{a.n_well_segmented} well-segmented cells (< {low})"),
             (a.obscured_share > cfg.max_obscured, f"{a.obscured_share:.0%} of the cell area obscured "
                                                    f"(> {cfg.max_obscured:.0%})")]
    mild = [(low <= a.n_well_segmented < limited, f"{a.n_well_segmented} well-segmented cells (< {limited})"),
            (cfg.limited_obscured < a.obscured_share <= cfg.max_obscured,
             f"{a.obscured_share:.0%} of the cell area obscured (> {cfg.limited_obscured:.0%})"),
            (a.out_of_focus_share > cfg.limited_out_of_focus,
             f"{a.out_of_focus_share:.0%} of the cell area out of focus (> {cfg.limited_out_of_focus:.0%})")]
    if any(hit for hit, _ in worst):
        a.verdict = "unsatisfactory"
    elif any(hit for hit, _ in mild):
        a.verdict = "limited"
    a.reasons = [why for hit, why in worst + mild if hit]
    return a
