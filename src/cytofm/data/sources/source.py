"""One reader interface for camera images and whole-slide images.

Both expose level-0 size, resolution and ``read(x, y, size0, out, z=None)``: a square region of ``size0``
level-0 pixels (of plane ``z``: z-stacks, ``cytofm.data.sources.zstack``) resampled to ``out`` pixels, so
tiling,
extraction and pretraining never care which kind of file a patch came from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from cytofm.data.sources.image_io import ImageReadError, read_rgb, resize_rgb, single_plane
from cytofm.data.sources.kinds import INPUT_KINDS

try:  # optional: the [wsi] extra
    import openslide

    OPENSLIDE_ERROR = None
except Exception as e:  # ImportError, or OSError when the C library is missing
    openslide = None
    OPENSLIDE_ERROR = str(e).splitlines()[0] if str(e) else type(e).__name__


class SourceError(ImageReadError):
    """A slide or image could not be opened or read."""


_resize = resize_rgb


class ImageSource:
    """A plain image held in memory."""

    kind = "image"
    level = 0

    def __init__(self, path: str | os.PathLike, mpp: float | None = None, array: np.ndarray | None = None):
        self.path = Path(path)
        if array is None:
            array, self.conversion = read_rgb(self.path)
        else:
            self.conversion = ""
        self.array = array
        self.height, self.width = array.shape[:2]
        self.mpp = mpp

    def read(self, x: int, y: int, size0: int | tuple[int, int],
             out: int | tuple[int, int] | None = None, z: int | None = None) -> np.ndarray:
        """Region at level-0 ``(x, y)``; parts outside the image are white (empty glass)."""
        single_plane(self.path, z)
        sw, sh = (size0, size0) if isinstance(size0, int) else size0
        region = np.full((sh, sw, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + sw, self.width), min(y + sh, self.height)
        if x1 > x0 and y1 > y0:
            region[y0 - y : y1 - y, x0 - x : x1 - x] = self.array[y0:y1, x0:x1]
        return _resize(region, out) if out is not None else region

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        scale = min(1.0, max_side / max(self.width, self.height))
        if scale >= 1.0:
            return self.array, 1.0
        tw, th = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        return _resize(self.array, (tw, th)), tw / self.width

    def close(self) -> None:
        self.array = None


class SlideSource:
    """A whole-slide image through OpenSlide; regions are read from the best pyramid level."""

    kind = "slide"

    def __init__(self, path: str | os.PathLike, mpp: float | None = None):
        self.path = Path(path)
        if openslide is None:
            raise SourceError(f"OpenSlide is not available ({OPENSLIDE_ERROR}); "
                              "install with: pip install 'cytofm[wsi]'")
        try:
            self.slide = openslide.OpenSlide(str(self.path))
        except Exception as e:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SourceError(f"OpenSlide cannot open this slide ({msg})") from None
        self.width, self.height = self.slide.dimensions
        self.conversion = "RGBA->RGB (alpha on white)"
        self.mpp = mpp if mpp is not None else slide_mpp(self.slide)
        self.level = 0

    def read(self, x: int, y: int, size0: int | tuple[int, int],
             out: int | tuple[int, int] | None = None, z: int | None = None) -> np.ndarray:
        single_plane(self.path, z)
        sw, sh = (size0, size0) if isinstance(size0, int) else size0
        ow, oh = (sw, sh) if out is None else ((out, out) if isinstance(out, int) else out)
        level = self.slide.get_best_level_for_downsample(max(sw / ow, 1.0) + 1e-6)
        ds = self.slide.level_downsamples[level]
        lw, lh = max(1, round(sw / ds)), max(1, round(sh / ds))
        try:
            region = self.slide.read_region((int(x), int(y)), level, (lw, lh))
        except Exception as e:
            raise SourceError(f"cannot read region at ({x}, {y}) level {level}: {e}") from None
        bg = Image.new("RGB", region.size, (255, 255, 255))
        bg.paste(region, mask=region.getchannel("A"))
        return _resize(np.asarray(bg), (ow, oh))

    def best_level(self, downsample: float) -> int:
        return int(self.slide.get_best_level_for_downsample(max(downsample, 1.0) + 1e-6))

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        im = self.slide.get_thumbnail((max_side, max_side)).convert("RGB")
        return np.asarray(im), im.size[0] / self.width

    def close(self) -> None:
        self.slide.close()


def slide_mpp(slide) -> float | None:
    """Level-0 microns per pixel from slide properties (mpp, else objective power: mpp = 10 / power)."""
    props = slide.properties
    for key in (getattr(openslide, "PROPERTY_NAME_MPP_X", "openslide.mpp-x"), "openslide.mpp-x",
                "aperio.MPP"):
        try:
            v = float(props[key])
            if v > 0:
                return v
        except (KeyError, ValueError, TypeError):
            pass
    try:
        power = float(props["openslide.objective-power"])
        if power > 0:
            return 10.0 / power
    except (KeyError, ValueError, TypeError):
        pass
    return None


def is_slide_file(path: str | os.PathLike) -> bool:
    """Whether OpenSlide should read the file: slide formats, and tiled (pyramidal) TIFFs."""
    from cytofm.data.sources.image_io import SLIDE_EXTENSIONS

    suffix = Path(path).suffix.lower()
    if suffix in SLIDE_EXTENSIONS:
        return True
    if suffix in (".tif", ".tiff") and openslide is not None:
        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except Exception:
            return False
    return False


def open_source(path: str | os.PathLike, kind: str, mpp: float | None = None, z: str | int | None = None,
                select: str = "auto"):
    """A source of the input kind named ``kind`` (``cytofm.data.sources.kinds``): a slide through OpenSlide;
    a z-stack under the plane policy ``z`` (default best, the sharpest plane found by ``select``); an image
    in memory, or in regions when it is above the memory budget."""
    return INPUT_KINDS.get(kind).open(path, mpp, z, select)
