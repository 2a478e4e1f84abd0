"""Z-stacks (several focal planes of one field or slide): what every reader gives, and which reads a file.

Cytology preparations are thick, so scanners record several focal planes; the readers pathology tools use
read one. A z-stack reader (``ome.OmeZStack``, ``czi.CziZStack``) gives ``info`` (:class:`ZStackInfo`) and
``read(z, x, y, w, h)``: a region of one plane as RGB uint8, white outside it, decoded from the part of
the file it touches, so memory holds a region, never a plane. ``source.ZStackSource`` reads a stack as any
other source under a plane policy (``prepare --z``); ``edf`` fuses the planes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.data.sources.zstack.base import CZI_SUFFIXES, TIFF_SUFFIXES, ZStackError, ZStackInfo

__all__ = ["ZStackError", "ZStackInfo", "is_zstack_file", "open_zstack"]


def is_zstack_file(path: str | os.PathLike) -> bool:
    """Whether a file is read as a z-stack: a CZI (any number of planes), or a TIFF whose first series has
    a z axis of more than one plane (read from its header and OME metadata; nothing decoded)."""
    suffix = Path(path).suffix.lower()
    if suffix in CZI_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return "Z" in series.axes and series.shape[series.axes.index("Z")] > 1
    except Exception:  # not a TIFF, or damaged: left to the single-plane readers, which say why
        return False


def open_zstack(path: str | os.PathLike):
    """The reader of a z-stack file by its format: CZI through pylibCZIrw, TIFF through tifffile."""
    if Path(path).suffix.lower() in CZI_SUFFIXES:
        from cytofm.data.sources.zstack.czi import CziZStack

        return CziZStack(path)
    from cytofm.data.sources.zstack.ome import OmeZStack

    return OmeZStack(path)
