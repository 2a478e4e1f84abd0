"""Labelled cells as items: the cells a ``--mode cells`` store detected, matched to a table of labelled
points, become a store of single-cell items (``cytofm.features.derived.cells_as_items``), checked first so a
wrong store or table is one clear refusal, not an empty evaluation. ``cytofm probe --cell-points`` and the
benchmark's cell tasks with ``points`` both go through here."""

from __future__ import annotations

import csv
from pathlib import Path

from cytofm.features.derived import cells_as_items
from cytofm.features.store import prepared_folder, store_identity
from cytofm.utils.errors import UserError
from cytofm.utils.io import strict_json

MATCHING_FILE = "matching.json"
"""Beside the items: how many labelled points there were, how many a detected cell matched (per class), the
tolerance, and every unmatched point (image, x, y, class, why)."""

LOSS_WARNING = 0.10
"""A class losing more than this share of its labelled points is warned: the unmatched cells are often the
hard ones (crowded, atypical), and an evaluation without them reads better than the task is."""


class CellPointsError(UserError, ValueError):
    """A store or point table that cannot give labelled cells."""


def _checked_prepared(store: Path, prepared: Path | None) -> Path:
    """The prepared folder with the detected cells (``prepared``, or the one the store was extracted
    from), after checking the store is one of cells."""
    ident = store_identity(store) or {}
    if ident.get("mode") != "cells":
        raise CellPointsError(f"{store}: --cell-points needs a store extracted with --mode cells, not "
                              f"{ident.get('mode') or 'an unrecorded mode'}")
    prepared = prepared if prepared is not None else prepared_folder(store)
    if prepared is None or not (prepared / "cells").is_dir():
        raise CellPointsError(f"{store}: the prepared folder it was extracted from (with its cells/) is not "
                              "found")
    return prepared


def _check_table(points: Path, label: str) -> None:
    if not points.is_file():
        raise CellPointsError(f"{points}: no such table of labelled cells")
    with open(points, newline="") as f:
        header = next(csv.reader(f), [])
    missing = [c for c in ("image", "x", "y", label) if c not in header]
    if missing:
        raise CellPointsError(f"{points}: no column {', '.join(missing)} (it needs image, x, y and {label})")


def label_detected_cells(store: Path, points: Path, label: str, out: Path, exclude: tuple[str, ...] = (),
                         prepared: Path | None = None, log=print) -> dict:
    """``out``: a store of the detected cells of ``store`` matched to the labelled ``points`` (``image``,
    ``x``, ``y`` in level-0 pixels, ``label``), each an item grouped by its ``field``, with
    ``matching.json``; the points no cell matched are counted and logged. ``prepared``: the prepared
    folder with the cells (default: the one the store was extracted from). Refused: a store not of cells,
    no prepared cells, a missing table or column, and no labelled cell matched at all."""
    from cytofm.eval.corrections import check_corrections, is_corrections, refuse_unmatched

    store, points, out = Path(store), Path(points), Path(out)
    prepared = _checked_prepared(store, prepared)
    _check_table(points, label)
    corrections = is_corrections(points)
    if corrections:  # a reviewer's file: every row must be a class of the model and a cell of its case
        check_corrections(points, label)
    n = cells_as_items(store, prepared, points, label, out, tuple(exclude))
    if corrections:
        refuse_unmatched(points, n["unmatched"])
    (out / MATCHING_FILE).write_text(strict_json(n))
    _log_matching(n, out / MATCHING_FILE, log)
    if not n["items"]:
        raise CellPointsError(f"{points}: no labelled cell matched a detected cell of {store} (are the image "
                              "paths relative to the table's folder, and x, y in level-0 pixels?)")
    return n


def _log_matching(n: dict, where: Path, log) -> None:
    """One line with the counts per class, and a warning per class that loses more than 10% of its points."""
    per = n["per_class"]
    classes = ", ".join(f"{c} {v['matched']}/{v['labelled']}" for c, v in per.items())
    log(f"{n['matched']} of {n['labelled']} labelled cells matched a detected cell within "
        f"{n['tolerance_px']:.1f} px ({n['labelled'] - n['matched']} unmatched, left out; matched per class: "
        f"{classes}; unmatched points listed in {where})")
    for c, v in per.items():
        lost = v["labelled"] - v["matched"]
        if v["labelled"] and lost / v["labelled"] > LOSS_WARNING:
            log(f"warning: class {c!r} loses {lost} of its {v['labelled']} labelled cells "
                f"({lost / v['labelled']:.0%}) to no match: the evaluation leaves them out, and they may be "
                f"the hard ones; see {where}")
