"""Z-stacks (several focal planes of one field or slide): what every reader gives, and which reads a file.

Cytology preparations are thick, so scanners record several focal planes; the readers pathology tools use
read one. A z-stack reader (``registry.ZSTACK_READERS``: ``ome.OmeZStack``, ``czi.CziZStack``) gives
``info`` (:class:`ZStackInfo`) and ``read(z, x, y, w, h)``: a region of one plane as RGB uint8, white
outside it, decoded from the part of the file it touches, so memory holds a region, never a plane.
``source.ZStackSource`` reads a stack as any other source under a plane policy (``prepare --z``); ``edf``
fuses the planes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.data.sources.zstack.base import ZStackError, ZStackInfo
from cytofm.data.sources.zstack.registry import ZSTACK_READERS

__all__ = ["ZStackError", "ZStackInfo", "is_zstack_file", "open_zstack", "reader_of"]


def reader_of(path: str | os.PathLike) -> str | None:
    """The name of the reader that claims a file as a z-stack (its suffix, then its header), or None."""
    suffix = Path(path).suffix.lower()
    for e in ZSTACK_READERS.entries():
        if suffix in e.suffixes and ZSTACK_READERS.get(e.name).sniff(path):
            return e.name
    return None


def is_zstack_file(path: str | os.PathLike) -> bool:
    """Whether a file is read as a z-stack: a CZI (any number of planes), or a TIFF whose first series has
    a z axis of more than one plane (read from its header and OME metadata; nothing decoded)."""
    return reader_of(path) is not None


def open_zstack(path: str | os.PathLike):
    """The reader of a z-stack file by its format (its suffix; another suffix: the default reader)."""
    suffix = Path(path).suffix.lower()
    entry = next((e for e in ZSTACK_READERS.entries() if suffix in e.suffixes), None)
    entry = entry or next(e for e in ZSTACK_READERS.entries() if e.default)
    return ZSTACK_READERS.get(entry.name)(path)
