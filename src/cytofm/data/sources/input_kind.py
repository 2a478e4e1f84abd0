"""What each kind of input is, so that prepare, extraction and pretraining ask the kind, never its name.

A kind claims files (``sniff``, after the suffix its registry entry lists), opens them (``open``: a source
with ``read(x, y, size0, out, z)``, or for a shard its members) and answers the decisions that differ by
kind: whether regions come from a pyramid level (``pyramid``), whether focal planes and the plane policy
apply (``planes``), whether its samples are files inside it (``members``), and what its size is without
decoding it (``header_size``, ``whole_size``). The kinds are listed in ``cytofm.data.sources.kinds``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path


class InputKind:
    """A single-plane file read in regions (the defaults every kind starts from)."""

    pyramid = False
    """Regions are read from the pyramid level nearest the target resolution (prepare records the level)."""
    planes = False
    """Several focal planes: the plane policy (``prepare --z``) applies to it and is recorded with it."""
    members = False
    """Its samples are whole image files inside it, addressed by (byte offset, size), not regions."""

    def sniff(self, path: Path) -> bool:
        """Whether a file with one of this kind's suffixes is of this kind."""
        return True

    def open(self, path: str | os.PathLike, mpp: float | None = None, z: str | int | None = None,
             select: str = "auto"):
        raise NotImplementedError

    def header_size(self, path: str | os.PathLike) -> tuple[int, int] | None:
        """(width, height) read cheaply from the header, or None when only decoding tells."""
        return None

    def whole_size(self, path: str | os.PathLike) -> tuple[int, int]:
        """(width, height) of the whole file at level 0, decoding as little as the format allows."""
        src = self.open(path)
        try:
            return src.width, src.height
        finally:
            src.close()


class ImageKind(InputKind):
    """A camera image (field, crop): decoded whole, or in regions when it is above the memory budget."""

    def open(self, path, mpp=None, z=None, select="auto"):
        from cytofm.data.sources.image_io import ImageTooLarge
        from cytofm.data.sources.source import ImageSource

        try:
            return ImageSource(path, mpp)
        except ImageTooLarge as e:
            from cytofm.data.sources.large_image import LargeImageSource

            return LargeImageSource(path, mpp, (e.width, e.height))

    def header_size(self, path):
        try:
            return self.whole_size(path)
        except Exception:  # noqa: BLE001 - formats PIL cannot sniff are decoded instead
            return None

    def whole_size(self, path):
        from cytofm.data.sources.image_io import image_size

        return image_size(path)


class SlideKind(InputKind):
    """A whole-slide image (or a tiled TIFF) read through OpenSlide from its pyramid."""

    pyramid = True

    def sniff(self, path):
        from cytofm.data.sources.source import is_slide_file

        return is_slide_file(path)

    def open(self, path, mpp=None, z=None, select="auto"):
        from cytofm.data.sources.source import SlideSource

        return SlideSource(path, mpp)


class ZStackKind(InputKind):
    """Several focal planes of one field or slide, read under a plane policy (default: the sharpest)."""

    planes = True

    def sniff(self, path):
        from cytofm.data.sources.zstack.stack import is_zstack_file

        return is_zstack_file(path)

    def open(self, path, mpp=None, z=None, select="auto"):
        from cytofm.data.sources.zstack.source import ZStackSource

        return ZStackSource(path, mpp, z, select)


class TarShard:
    """A webdataset shard held open: ``read(offset, size)`` gives a member's bytes."""

    def __init__(self, path: str | os.PathLike):
        self.f = open(path, "rb")  # noqa: SIM115 - kept open in the reader's cache

    def read(self, offset: int, size: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(size)

    def close(self) -> None:
        self.f.close()


class TarKind(InputKind):
    """A webdataset tar shard (``prepare --materialize webdataset``): each image member is one sample."""

    members = True

    def open(self, path, mpp=None, z=None, select="auto"):
        return TarShard(path)

    def member_size(self, path: str | os.PathLike, offset: int, size: int) -> tuple[int, int]:
        """(width, height) of the member at ``offset``, from its header."""
        from PIL import Image

        with open(path, "rb") as fh:
            fh.seek(offset)
            with Image.open(io.BytesIO(fh.read(size))) as im:
                return im.size


IMAGE, SLIDE, ZSTACK, TAR = ImageKind(), SlideKind(), ZStackKind(), TarKind()
