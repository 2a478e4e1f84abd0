"""The feature layouts of other tools, by name (``cytofm convert --to/--from``). Each entry is a
:class:`FeatureFormat`: ``write(slides, out, mpp)`` writes the tool's files for cytofm's per-slide records
(``slides.Slide``) and returns the folder to point the tool at; ``read(folder, mpp, table)`` reads the
tool's folder back into records (``table``: the tool's own slide table, where it keeps one; ``mpp``: the
level-0 resolution of items that do not record it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from cytofm.utils.registry import Registry


class FeatureFormat(NamedTuple):
    read: Callable
    write: Callable


FEATURE_FORMATS: Registry = Registry("feature format")
FEATURE_FORMATS.add("trident", "cytofm.features.formats.trident:FORMAT",
                    "TRIDENT's features_<encoder>/<id>.h5, coords with patch_size_level0 and magnifications",
                    table=None)
FEATURE_FORMATS.add("clam", "cytofm.features.formats.clam:FORMAT",
                    "CLAM's h5_files/, pt_files/ (plain tensors) and dataset.csv (case_id, slide_id, label)",
                    table="dataset.csv")
FEATURE_FORMATS.add("stamp", "cytofm.features.formats.stamp:FORMAT",
                    "STAMP's <extractor>/<id>.h5 (feats, coords in um), slide_table.csv and clini_table.csv",
                    table="slide_table.csv")
