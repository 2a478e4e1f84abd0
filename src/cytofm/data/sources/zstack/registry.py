"""The z-stack readers by name. A reader is a class ``Reader(path)`` giving ``info`` and
``read(z, x, y, w, h)`` (``base.ZStackReader``), with ``Reader.sniff(path)``: whether a file of one of its
``suffixes`` holds several planes (from its header; nothing decoded). ``stack`` asks them in this order;
``default`` reads a file no reader claims by suffix, so that it is refused with that reader's reason."""

from __future__ import annotations

from cytofm.data.sources.zstack.base import CZI_SUFFIXES, TIFF_SUFFIXES
from cytofm.utils.registry import Registry

ZSTACK_READERS: Registry = Registry("z-stack reader")
ZSTACK_READERS.add("czi", "cytofm.data.sources.zstack.czi:CziZStack",
                   "Zeiss CZI through pylibCZIrw (the [zstack] extra), any number of planes",
                   suffixes=CZI_SUFFIXES, default=False)
ZSTACK_READERS.add("ome-tiff", "cytofm.data.sources.zstack.ome:OmeZStack",
                   "OME-TIFF / TIFF whose first series has a z axis of more than one plane, through tifffile",
                   suffixes=TIFF_SUFFIXES, default=True)
