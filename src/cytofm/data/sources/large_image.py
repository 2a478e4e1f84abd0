"""Plain images too large to decode whole (a 40000 x 40000 PNG is 4.8 GB as RGB), read in regions.

libvips (through pyvips) does what Pillow cannot: a thumbnail streamed from the file with
shrink-on-load for the foreground mask, and random regions from a decoded copy it keeps in a
temporary file on disk (``TMPDIR``) rather than in memory. Peak memory stays in the hundreds of MB
whatever the image size (``benchmarks/large_image_memory.py``); the price is disk space for that copy
(3 bytes a pixel) and one sequential decode per opened image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cytofm.data.sources.image_io import BUDGET_PIXELS, IMAGE_BUDGET_MB, ImageReadError, single_plane
from cytofm.utils.errors import one_line

try:
    import pyvips

    pyvips.cache_set_max(8)  # finished region operations are not worth keeping
    VIPS_ERROR = None
except Exception as e:  # ImportError, or OSError when libvips is missing
    pyvips = None
    VIPS_ERROR = str(e).splitlines()[0] if str(e) else type(e).__name__


_VIPS_USED = False


def worker_start_method() -> str | None:
    """How to start worker processes from this process: ``forkserver`` once libvips has run here.

    libvips keeps a thread pool; a process forked from one that used it inherits locked mutexes and
    hangs at its first libvips call. Workers started through a fork server come from a clean process.
    ``None`` (the platform default, fork on Linux) otherwise, which starts faster.
    """
    return "forkserver" if _VIPS_USED else None


_one_line = one_line


def _rgb_uint8(im):
    """Any vips image -> 8-bit sRGB, alpha composited on white; returns (image, conversion note)."""
    notes = []
    if im.interpretation in ("cmyk", "lab", "labs", "lch", "xyz", "yxy", "hsv", "scrgb"):
        notes.append(f"{im.interpretation}->RGB")
        im = im.colourspace("srgb")
    if im.format != "uchar":
        hi = max(float(im.max()), 1.0)
        if im.format in ("float", "double", "complex", "dpcomplex"):
            scale = 255.0 if hi <= 1.0 else 255.0 / hi
            notes.append("float -> 8-bit")
        else:
            bits = max(8, math.ceil(math.log2(hi + 1)))
            scale = 255.0 / (2**bits - 1)
            notes.append(f"{bits}-bit -> 8-bit")
        im = (im * scale).cast("uchar")
    if im.bands in (2, 4):
        notes.append("alpha on white")
        im = im.flatten(background=[255] * (im.bands - 1))
    if im.bands == 1:
        notes.append("gray->RGB")
        im = im.bandjoin([im, im])
    elif im.bands > 3:
        im = im.extract_band(0, n=3)
    return im, "; ".join(notes)


def _to_array(im) -> np.ndarray:
    return np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))


class LargeImageSource:
    """A plain image read through libvips in regions; same interface as ``ImageSource``."""

    kind = "image"
    level = 0

    def __init__(self, path: str | os.PathLike, mpp: float | None = None,
                 size: tuple[int, int] | None = None):
        global _VIPS_USED
        self.path = Path(path)
        self.mpp = mpp
        what = f"image {size[0]}x{size[1]}" if size else "image"
        if pyvips is None:
            raise ImageReadError(f"{what} is above the memory budget of {IMAGE_BUDGET_MB:g} MB for whole "
                                 f"images and pyvips is not available to read it in regions ({VIPS_ERROR}); "
                                 "install with: pip install pyvips pyvips-binary")
        _VIPS_USED = True
        try:
            head = pyvips.Image.new_from_file(str(self.path))
            self.width, self.height = head.width, head.height
            if head.get_typeof("orientation") and head.get("orientation") in (5, 6, 7, 8):
                self.width, self.height = head.height, head.width
        except pyvips.Error as e:
            raise ImageReadError(f"{what} is above the memory budget of {IMAGE_BUDGET_MB:g} MB for whole "
                                 f"images and libvips cannot read it in regions ({_one_line(e)})") from None
        self.conversion = "read in regions (libvips)"
        self._image = None

    def _full(self):
        if self._image is None:
            try:
                im = pyvips.Image.new_from_file(str(self.path), access="random").autorot()
                self._image, note = _rgb_uint8(im)
            except pyvips.Error as e:
                raise ImageReadError(f"libvips cannot decode the image ({_one_line(e)})") from None
            if note:
                self.conversion += f"; {note}"
        return self._image

    def read(self, x: int, y: int, size0: int | tuple[int, int],
             out: int | tuple[int, int] | None = None, z: int | None = None) -> np.ndarray:
        """Region at level-0 ``(x, y)``; parts outside the image are white (empty glass)."""
        single_plane(self.path, z)
        sw, sh = (size0, size0) if isinstance(size0, int) else size0
        ow, oh = (sw, sh) if out is None else ((out, out) if isinstance(out, int) else out)
        if ow * oh > BUDGET_PIXELS:
            raise ImageReadError(f"a region of {ow}x{oh} px is above the memory budget of "
                                 f"{IMAGE_BUDGET_MB:g} MB")
        im = self._full()
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + sw, self.width), min(y + sh, self.height)
        try:
            if x1 <= x0 or y1 <= y0:
                return np.full((oh, ow, 3), 255, np.uint8)
            region = im.crop(x0, y0, x1 - x0, y1 - y0)
            if (x0, y0, x1, y1) != (x, y, x + sw, y + sh):
                region = region.embed(x0 - x, y0 - y, sw, sh, extend="background", background=[255, 255, 255])
            if (ow, oh) != (sw, sh):
                region = region.resize(ow / sw, vscale=oh / sh, kernel="linear")
            arr = _to_array(region)
        except pyvips.Error as e:
            raise ImageReadError(f"cannot read region at ({x}, {y}): {_one_line(e)}") from None
        if arr.shape[:2] != (oh, ow):  # rounding in resize
            from PIL import Image

            arr = np.asarray(Image.fromarray(arr).resize((ow, oh), Image.Resampling.BILINEAR))
        return arr

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """Streamed from the file with shrink-on-load: the image is never decoded whole."""
        scale = min(1.0, max_side / max(self.width, self.height))
        tw, th = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        try:
            im = pyvips.Image.thumbnail(str(self.path), tw, height=th, size="force")
            im, _ = _rgb_uint8(im)
            return _to_array(im), tw / self.width
        except pyvips.Error as e:
            raise ImageReadError(f"libvips cannot make a thumbnail ({_one_line(e)})") from None

    def close(self) -> None:
        self._image = None
