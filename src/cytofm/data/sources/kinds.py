"""The input kinds by name: the ``kind`` column of a prepared manifest and of every table of sources.

Each entry is an :class:`~cytofm.data.sources.input_kind.InputKind`; its facts are the file suffixes it
may claim (``suffixes``) and whether ``prepare`` reads it as a source (``prepared``; a tar shard is only
read by pretraining). :func:`kind_of` asks the prepared kinds in this order, so a multi-plane TIFF is a
z-stack before a tiled TIFF is a slide before any other TIFF is an image."""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.data.sources.image_io import IMAGE_EXTENSIONS, SLIDE_EXTENSIONS
from cytofm.data.sources.zstack.base import CZI_SUFFIXES, TIFF_SUFFIXES
from cytofm.utils.registry import Registry

INPUT_KINDS: Registry = Registry("input kind")
INPUT_KINDS.add("zstack", "cytofm.data.sources.input_kind:ZSTACK",
                "several focal planes (CZI, multi-plane OME-TIFF), read under a plane policy",
                suffixes=frozenset(CZI_SUFFIXES + TIFF_SUFFIXES), prepared=True)
INPUT_KINDS.add("slide", "cytofm.data.sources.input_kind:SLIDE",
                "a whole-slide image or tiled TIFF, read through OpenSlide from its pyramid",
                suffixes=frozenset(SLIDE_EXTENSIONS | set(TIFF_SUFFIXES)), prepared=True)
INPUT_KINDS.add("image", "cytofm.data.sources.input_kind:IMAGE",
                "a camera image (field, crop), decoded whole or in regions above the memory budget",
                suffixes=frozenset(IMAGE_EXTENSIONS), prepared=True)
INPUT_KINDS.add("tar", "cytofm.data.sources.input_kind:TAR",
                "a webdataset tar shard of patches (pretraining reads its image members)",
                suffixes=frozenset({".tar"}), prepared=False)


def input_suffixes() -> frozenset[str]:
    """Every suffix a prepared kind may claim (what a folder walk looks at)."""
    return frozenset().union(*(e.suffixes for e in INPUT_KINDS.entries() if e.prepared))


def kind_of(path: str | os.PathLike) -> str | None:
    """The name of the first prepared kind that claims the file (its suffix, then its header), or None."""
    suffix = Path(path).suffix.lower()
    for e in INPUT_KINDS.entries():
        if e.prepared and suffix in e.suffixes and INPUT_KINDS.get(e.name).sniff(Path(path)):
            return e.name
    return None
