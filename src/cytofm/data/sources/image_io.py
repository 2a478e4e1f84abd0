"""Read any microscopy image file as RGB uint8 and say how it was converted.

Camera fields and cell crops arrive as 8-bit RGB JPEGs, but also as grayscale, RGBA screenshots,
palette PNGs, or 12/16-bit TIFFs from scientific cameras. Everything downstream expects RGB uint8,
so each conversion is made explicit and recorded in the dataset manifest.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Memory budget for decoding one image whole (RGB, 3 bytes a pixel; decoding peaks at about 3.3x this,
# Pillow's 4-byte pixels, its byte copy and the array). Larger images are read in regions
# (``cytofm.data.sources.large_image``); whole slides always go through OpenSlide.
IMAGE_BUDGET_MB = float(os.environ.get("CYTOFM_IMAGE_BUDGET_MB", "256"))
BUDGET_PIXELS = int(IMAGE_BUDGET_MB * 1e6 / 3)
# Pillow's guard stays on, at the budget: it raises above 2 x MAX_IMAGE_PIXELS, before decoding.
Image.MAX_IMAGE_PIXELS = BUDGET_PIXELS // 2
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
SLIDE_EXTENSIONS = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"}


class ImageReadError(Exception):
    """An image could not be read; the message is one line naming the problem (not the file)."""


class ImageTooLarge(ImageReadError):
    """Decoding the image whole would exceed the memory budget; read it in regions instead."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        super().__init__(f"image {width}x{height} needs {width * height * 3 / 1e6:.0f} MB decoded, above the "
                         f"memory budget of {IMAGE_BUDGET_MB:g} MB for whole images (CYTOFM_IMAGE_BUDGET_MB)")


def _scale_to_uint8(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Scale integer or float data to uint8, using the bit depth the data actually uses.

    12-bit cameras write 16-bit containers; dividing by 257 would make them nearly black, so
    the scale comes from the smallest bit depth (>= 8) that holds the maximum value.
    """
    if arr.dtype == np.uint8:
        return arr, ""
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(finite.max()) if finite.size else 1.0
        if hi <= 1.0:
            out = np.clip(finite, 0, 1) * 255.0
            note = "float [0,1] -> 8-bit"
        else:
            out = np.clip(finite, 0, hi) * (255.0 / hi)
            note = f"float [0,{hi:g}] -> 8-bit"
        return np.round(out).astype(np.uint8), note
    arr = arr.astype(np.int64)
    hi = int(arr.max()) if arr.size else 0
    bits = max(8, math.ceil(math.log2(hi + 1))) if hi > 0 else 8
    if bits == 8:
        return np.clip(arr, 0, 255).astype(np.uint8), f"{arr.dtype.itemsize * 8}-bit container, 8 bits used"
    out = np.round(np.clip(arr, 0, None) * (255.0 / (2**bits - 1)))
    return out.astype(np.uint8), f"{bits}-bit -> 8-bit"


def _to_rgb(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Channel layout -> RGB, compositing alpha on white (brightfield background)."""
    notes: list[str] = []
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:  # planar (C, H, W) TIFF
        arr = np.moveaxis(arr, 0, -1)
        notes.append("planar->interleaved")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ImageReadError(f"unsupported array shape {arr.shape}")
    arr, depth_note = _scale_to_uint8(arr)
    if depth_note:
        notes.append(depth_note)
    c = arr.shape[-1]
    if c == 1:
        notes.append("gray->RGB")
        return np.repeat(arr, 3, axis=-1), notes
    if c == 2:  # gray + alpha
        gray, alpha = arr[..., :1].astype(np.float32), arr[..., 1:].astype(np.float32) / 255.0
        out = gray * alpha + 255.0 * (1 - alpha)
        notes.append("gray+alpha->RGB (alpha on white)")
        return np.repeat(np.round(out).astype(np.uint8), 3, axis=-1), notes
    if c == 4:
        rgb, alpha = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255.0
        if alpha.min() >= 1.0:
            notes.append("RGBA->RGB (opaque alpha dropped)")
            return arr[..., :3].copy(), notes
        out = rgb * alpha + 255.0 * (1 - alpha)
        notes.append("RGBA->RGB (alpha on white)")
        return np.round(out).astype(np.uint8), notes
    if c == 3:
        return np.ascontiguousarray(arr), notes
    raise ImageReadError(f"unsupported number of channels: {c}")


def _pil_to_array(im: Image.Image) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im), notes
    if mode == "P":
        has_alpha = "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette->RGB")
        arr, more = _to_rgb(np.asarray(im))
        return arr, notes + more
    if mode in ("1", "L", "LA", "RGBA"):
        if mode == "1":
            im = im.convert("L")
            notes.append("1-bit")
        arr, more = _to_rgb(np.asarray(im))
        return arr, notes + more
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "I" and arr.min() < 0:
            arr = arr - arr.min()
        out, more = _to_rgb(arr)
        return out, notes + more
    # CMYK, YCbCr, LAB, HSV ...
    notes.append(f"{mode}->RGB")
    return np.asarray(im.convert("RGB")), notes


def read_rgb(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read an image file as an (H, W, 3) uint8 array.

    Returns:
        The array and a short record of the conversion ("" when the file was already 8-bit RGB).

    Raises:
        ImageReadError: empty, truncated, corrupt or unsupported files, with a one-line reason.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except OSError as e:
        raise ImageReadError(f"cannot access file ({e.strerror})") from None
    if path.is_dir():
        raise ImageReadError("is a directory, not an image")
    if size == 0:
        raise ImageReadError("empty file (0 bytes)")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > BUDGET_PIXELS:  # (Pillow refuses only from 2x its limit)
                raise ImageTooLarge(*im.size)
            im.load()
            # exif_transpose copies even an upright image; a copy of a large image is hundreds of MB
            rotated = ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im
            if rotated is not im and rotated.size != im.size:
                notes.append("EXIF orientation applied")
            arr, more = _pil_to_array(rotated)
            notes += more
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"first of {im.n_frames} frames")
    except ImageTooLarge:
        raise
    except UnidentifiedImageError:
        arr = _read_with_tifffile(path, "not a recognised image format")
        notes.append("read with tifffile")
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _read_with_tifffile(path, msg)
            notes.append("read with tifffile")
        elif "truncated" in msg.lower():
            raise ImageReadError(f"truncated image ({msg})") from None
        else:
            raise ImageReadError(f"corrupt or unreadable image ({msg})") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(*_header_size(path)) from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"image has no pixels (shape {arr.shape})")
    return np.ascontiguousarray(arr), "; ".join(n for n in notes if n)


def _read_with_tifffile(path: Path, pil_reason: str) -> np.ndarray:
    """TIFFs PIL cannot decode (48-bit RGB, float, planar); anything else is reported as PIL saw it."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ImageReadError(pil_reason)
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            shape = tf.pages[0].shape
            if int(np.prod(shape[:2] if len(shape) < 3 or shape[-1] <= 4 else shape[-2:])) > BUDGET_PIXELS:
                h, w = (shape[:2] if len(shape) < 3 or shape[-1] <= 4 else shape[-2:])
                raise ImageTooLarge(int(w), int(h))
            arr = tf.asarray(key=0)
    except ImageTooLarge:
        raise
    except Exception as e:  # tifffile raises many types for broken files
        raise ImageReadError(
            f"unreadable TIFF ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    rgb, _ = _to_rgb(np.asarray(arr))
    return rgb


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header only."""
    return _header_size(path)


def _header_size(path: str | os.PathLike) -> tuple[int, int]:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here
    try:
        with Image.open(path) as im:
            return im.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def resize_rgb(arr: np.ndarray, out: int | tuple[int, int]) -> np.ndarray:
    """An RGB array resampled to ``out`` (a side, or width and height); unchanged when already that size."""
    ow, oh = (out, out) if isinstance(out, int) else out
    if arr.shape[1] == ow and arr.shape[0] == oh:
        return arr
    return np.asarray(Image.fromarray(arr).resize((ow, oh), Image.Resampling.BILINEAR, reducing_gap=2.0))


def single_plane(path, z: int | None) -> None:
    """Every source's ``read`` takes a plane ``z`` (recorded for z-stacks); a single-plane source has only
    plane 0 (None: no plane asked)."""
    if z not in (None, 0):
        raise ImageReadError(f"{path}: a single plane; no plane {z}")
