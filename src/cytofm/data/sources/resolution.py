"""A source's resolution (um/px): one reading of a manifest's ``mpp`` value and one wording when it is
missing, so every stage that needs it (resampling, cell detection, extraction) says the same thing."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from cytofm.data.sources.image_io import SLIDE_EXTENSIONS
from cytofm.utils.errors import UserError


class BadResolution(UserError, ValueError):
    """An ``mpp`` value that is not a positive number of um/px (refused by name, never taken as missing)."""


DECIMAL_COMMA = re.compile(r"\d+,\d+")
MISSING = ("", "na", "n/a", "nan", "none", "null", "-")
"""How manifests written by spreadsheets and data frames say "not known": missing, so --mpp applies."""


def parse_mpp(raw, where: str = "") -> float | None:
    """``''`` (or NA, nan, none...) -> None; ``0.12`` and ``0,12`` (one comma with digits either side: a
    decimal comma, as spreadsheets in many locales write it) -> 0.12; anything else is refused naming the
    value."""
    s = str(raw if raw is not None else "").strip()
    if s.lower() in MISSING:
        return None
    if DECIMAL_COMMA.fullmatch(s):
        s = s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        raise BadResolution(f"{where}mpp {raw!r} is not a number of um/px (e.g. 0.25; a decimal comma "
                            "as in 0,25 is read too)") from None
    if not (math.isfinite(v) and v > 0):
        raise BadResolution(f"{where}mpp {raw!r} must be a positive number of um/px")
    return v


def _why_missing(path: str | os.PathLike) -> str:
    """What in the file should have said the resolution (an OME-TIFF's PhysicalSizeX, named as such)."""
    name = Path(path).name.lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "the OME-TIFF has no PhysicalSizeX"
    if name.endswith(".czi"):
        return "the CZI records no pixel scaling"
    if Path(name).suffix in SLIDE_EXTENSIONS:
        return "the slide records no um/px"
    return "the file records none"


def missing_resolution(path: str | os.PathLike, needed_for: str, empty_column: bool = False) -> str:
    """The one message for a source without um/px (without the path, which a skip names): why it is
    unknown, what needs it, and the fix; a manifest whose 'mpp' cell is empty is told so, not asked for the
    column it has."""
    give = ("its 'mpp' cell in the manifest is empty: fill it, or give --mpp (resolution.mpp=...)"
            if empty_column else "give --mpp (resolution.mpp=...) or an 'mpp' column in the manifest")
    return f"resolution unknown ({_why_missing(path)}): {needed_for} needs um/px; {give}"
