"""OME-TIFF z-stacks read plane by plane through tifffile, region by region.

The OME metadata give the planes, their order and spacing (``PhysicalSizeZ``) and the pixel size; only the
tiles a region touches are decoded (tifffile's ``TiffPage.decode`` on the segments read from the file), and
the compressed size of each tile is in the file's index (:meth:`OmeZStack.stored_bytes`), which is how
``best`` finds the sharpest plane without decoding the others.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cytofm.data.sources.zstack.base import ZStackError, ZStackInfo, ZStackReader
from cytofm.utils.errors import one_line


class OmeZStack(ZStackReader):
    """An OME-TIFF z-stack (axes ZYXS or ZYX with RGB samples): ``read(z, x, y, w, h)`` gives RGB uint8."""

    @classmethod
    def sniff(cls, path) -> bool:
        """A TIFF whose first series has a z axis of more than one plane (header and OME metadata only)."""
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return "Z" in series.axes and series.shape[series.axes.index("Z")] > 1
        except Exception:  # not a TIFF, or damaged: left to the single-plane readers, which say why
            return False

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as e:  # TiffFileError, OSError, ValueError from a broken header
            raise ZStackError(f"{self.path}: not a readable TIFF ({one_line(e)})") from None
        if not self._tif.series:
            self._tif.close()
            raise ZStackError(f"{self.path}: not a readable TIFF (no image in it)")
        try:
            self._pages, self.info = self._planes()
        except ZStackError:
            self._tif.close()
            raise
        except Exception as e:  # OME-XML or tags tifffile cannot parse
            self._tif.close()
            raise ZStackError(f"{self.path}: cannot read its planes ({one_line(e)})") from None

    def _ome_pixels(self) -> dict:
        """The OME ``Pixels`` element of the first image ({} for a TIFF without OME metadata)."""
        import tifffile

        if not self._tif.is_ome:
            return {}
        meta = tifffile.xml2dict(self._tif.ome_metadata).get("OME", {}).get("Image", {})
        return (meta[0] if isinstance(meta, list) else meta).get("Pixels", {})

    def _planes(self):
        series = self._tif.series[0]
        axes = series.axes
        if "Z" not in axes:
            self._no_z_axis(axes)
        n = series.shape[axes.index("Z")]
        other = {a: k for a, k in zip(axes, series.shape, strict=True) if a not in "ZYXS" and k > 1}
        if other:
            extra = ", ".join(f"{k} along {a}" for a, k in other.items())
            raise ZStackError(f"{self.path}: axes {axes} with {extra}: z-stacks of one RGB or grey image per "
                              "plane are read (one channel, one time point)")
        pages = [p.aspage() for p in series.pages if p is not None]  # frames share the key page's tags
        if len(pages) != n:
            raise ZStackError(f"{self.path}: the metadata give {n} planes but the file holds {len(pages)} "
                              "(a plane is missing)")
        if pages[0].dtype != np.uint8:
            raise ZStackError(f"{self.path}: planes of {pages[0].dtype} samples; 8-bit RGB or grey z-stacks "
                              "are read")
        sizes = {(p.imagewidth, p.imagelength) for p in pages}
        if len(sizes) > 1:
            raise ZStackError(f"{self.path}: planes of different sizes {sorted(sizes)}")
        pixels = self._ome_pixels()
        spacing, mpp = pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeX")
        (w, h), = sizes
        return pages, ZStackInfo(n, float(spacing) if spacing else None, int(w), int(h),
                                 float(mpp) if mpp else None)

    def read(self, z: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Plane ``z``'s region (level-0 top-left ``x, y``, ``w`` x ``h``; outside the plane is white)."""
        out, (x0, y0, x1, y1) = self.canvas(z, x, y, w, h)
        page = self._pages[z]
        if x1 <= x0 or y1 <= y0:
            return out
        if not page.is_tiled:  # strips: the page is decoded whole (small planes only)
            a = _rgb(page.asarray())
            out[y0 - y:y1 - y, x0 - x:x1 - x] = a[y0:y1, x0:x1]
            return out
        th, tw = page.tilelength, page.tilewidth
        fh = page.parent.filehandle  # the file this plane is in (an OME set may span files)
        decode = page.decode  # before any seek: building the decoder may move the file position
        for k, (sx0, sy0, sx1, sy1), (gx0, gy0) in _tiles_under(page, x0, y0, x1, y1):
            fh.seek(page.dataoffsets[k])
            seg, _, _ = decode(fh.read(page.databytecounts[k]), k, jpegtables=page.jpegtables)
            tile = _rgb(np.asarray(seg).reshape(th, tw, -1))
            out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[sy0 - gy0:sy1 - gy0, sx0 - gx0:sx1 - gx0]
        return out

    def _no_z_axis(self, axes: str):
        """Why a file has no z series: OME metadata that promise planes tifffile could not stack (of
        different sizes, or fewer than promised), or a single plane."""
        n = int(self._ome_pixels().get("SizeZ", 0) or 0)
        if n > 1:
            sizes = sorted({(p.imagewidth, p.imagelength) for p in self._tif.pages[:n]})
            why = f"planes of different sizes {sizes}" if len(sizes) > 1 else \
                f"the metadata give {n} planes but they cannot be read as one stack"
            raise ZStackError(f"{self.path}: {why}")
        raise ZStackError(f"{self.path}: no z axis (axes {axes}): a single plane, read it as an image")

    @property
    def compressed(self) -> bool:
        """Whether the planes are stored compressed in tiles (what :meth:`stored_bytes` needs)."""
        page = self._pages[0]
        return bool(page.is_tiled) and int(page.compression) != 1

    @property
    def lossy(self) -> bool:
        """Whether the tiles are compressed lossily (JPEG, JPEG 2000, JPEG XL/XR, WebP: what scanners write).
        Only then do tile sizes follow the detail: lossless codecs spend most bytes on the sensor noise,
        which every plane has alike (``benchmarks/zstack.py``, select)."""
        name = getattr(self._pages[0].compression, "name", "")
        return self.compressed and any(k in name for k in ("JPEG", "JP2000", "WEBP"))

    def stored_bytes(self, z: int, x: int, y: int, w: int, h: int) -> float:
        """Compressed bytes of plane ``z`` under a region, each tile's share by the area the region covers:
        a defocused plane compresses smaller (less fine detail). From the file's index: nothing decoded."""
        _, (x0, y0, x1, y1) = self.canvas(z, x, y, w, h)
        page = self._pages[z]
        if x1 <= x0 or y1 <= y0:
            return 0.0
        return sum(page.databytecounts[k] * (sx1 - sx0) * (sy1 - sy0)
                   for k, (sx0, sy0, sx1, sy1), _ in _tiles_under(page, x0, y0, x1, y1)) / (
            page.tilewidth * page.tilelength)

    def close(self) -> None:
        self._tif.close()


def _tiles_under(page, x0: int, y0: int, x1: int, y1: int):
    """Each tile of a tiled page under the level-0 box (non-empty, inside the page): its index, the part of
    the box it covers ``(sx0, sy0, sx1, sy1)`` and its top-left ``(gx0, gy0)``."""
    th, tw = page.tilelength, page.tilewidth
    across = -(-page.imagewidth // tw)
    for ty in range(y0 // th, (y1 - 1) // th + 1):
        for tx in range(x0 // tw, (x1 - 1) // tw + 1):
            gx0, gy0 = tx * tw, ty * th
            yield (ty * across + tx, (max(x0, gx0), max(y0, gy0), min(x1, gx0 + tw), min(y1, gy0 + th)),
                   (gx0, gy0))


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
