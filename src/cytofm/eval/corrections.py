"""A reviewer's corrections (``review.html``'s Save: ``image, x, y, label, verdict, case, predicted,
classes``) read back as labelled cells, so a review round becomes the next training set through
``cytofm probe --cell-points``. A corrections file is stricter than a table of labelled points: it was written
from cells the detector found, so a row whose class the model did not have, or whose cell is not in its
case, is an error to fix, not a point to leave out."""

from __future__ import annotations

import csv
from pathlib import Path

from cytofm.utils.errors import UserError

COLUMNS = ("image", "x", "y", "label", "verdict", "case", "predicted", "classes")
VERDICTS = ("confirmed", "reclassified")


class CorrectionsError(UserError, ValueError):
    """A corrections file with rows that cannot be labels."""


def is_corrections(table: Path) -> bool:
    """Whether a table of labelled cells is a reviewer's corrections (it has the ``verdict`` column)."""
    with open(table, newline="") as f:
        return "verdict" in next(csv.reader(f), [])


def check_corrections(table: Path, label: str = "label") -> list[dict]:
    """The rows of a corrections file, refused with the bad rows named (line numbers as a spreadsheet shows
    them, the header being line 1): a verdict other than confirmed/reclassified, an empty class, or a class
    not among the row's ``classes`` (the model's, which the page offered)."""
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    bad = []
    for n, r in enumerate(rows, start=2):
        allowed = [c for c in (r.get("classes") or "").split("|") if c]
        value = (r.get(label) or "").strip()
        if r.get("verdict") not in VERDICTS:
            bad.append(f"line {n}: verdict {r.get('verdict')!r} (expected {' or '.join(VERDICTS)})")
        elif not value:
            bad.append(f"line {n}: no class in column {label}")
        elif allowed and value not in allowed:
            bad.append(f"line {n}: unknown class {value!r} (the model's: {', '.join(allowed)})")
    if bad:
        raise CorrectionsError(f"{table}: {len(bad)} row(s) cannot be labels: " + "; ".join(bad[:10])
                               + (f"; ... {len(bad) - 10} more" if len(bad) > 10 else ""))
    return rows


def refuse_unmatched(table: Path, unmatched: list[dict]) -> None:
    """Corrections whose cell no detected cell of the store matched: the cell is not in that case (or the
    store is another case's), so the whole file is refused with those rows named."""
    if not unmatched:
        return
    with open(table, newline="") as f:
        lines = {(r["image"], float(r["x"]), float(r["y"])): n
                 for n, r in enumerate(csv.DictReader(f), start=2)}
    named = [f"line {lines.get((u['image'], float(u['x']), float(u['y'])), '?')} ({u['image']} at "
             f"{float(u['x']):g}, {float(u['y']):g}: {u['why']})" for u in unmatched]
    raise CorrectionsError(f"{table}: {len(named)} corrected cell(s) are not cells of the store's cases: "
                           + "; ".join(named[:10])
                           + (f"; ... {len(named) - 10} more" if len(named) > 10 else "")
                           + " (give the store the review was made on, e.g. the triage folder's features/)")
