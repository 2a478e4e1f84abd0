"""Zeiss CZI z-stacks read plane by plane through pylibCZIrw (Zeiss' own libCZI), region by region.

The CZI's dimension index gives the planes (``Z``) and the subblocks each holds; its scaling metadata give
the pixel size and the z spacing (metres in the file). libCZI composes a region from the subblocks it
touches, so memory holds a region, never a plane. pylibCZIrw is the optional ``[zstack]`` extra; without
it a CZI is refused with the install line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cytofm.data.sources.zstack.base import ZStackError, ZStackInfo, ZStackReader
from cytofm.utils.errors import one_line


def _pyczi():
    try:
        from pylibCZIrw import czi
    except Exception as e:  # ImportError, or a missing shared library
        raise ZStackError(f"reading CZI needs pylibCZIrw ({one_line(e)}); "
                          "install with: pip install 'cytofm[zstack]'") from None
    return czi


class CziZStack(ZStackReader):
    """A CZI's planes (scene 0, channel 0: a brightfield RGB image): ``read(z, x, y, w, h)`` gives RGB."""

    compressed = lossy = False  # the sharpest plane is chosen from pixels (no tile index to read sizes from)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._r = _pyczi().CziReader(str(self.path))
        except ZStackError:
            raise
        except Exception as e:  # libCZI: not a CZI, truncated, unreadable
            raise ZStackError(f"{self.path}: not a readable CZI ({one_line(e)})") from None
        try:
            self.info = self._planes()
        except ZStackError:
            self._r.close()
            raise
        except Exception as e:  # metadata libCZI or we cannot parse
            self._r.close()
            raise ZStackError(f"{self.path}: cannot read its planes ({one_line(e)})") from None

    def _planes(self) -> ZStackInfo:
        box, rect = self._r.total_bounding_box, self._r.total_bounding_rectangle
        z0, z1 = box.get("Z", (0, 1))
        pixel = self._r.pixel_types.get(0, "")
        if pixel not in ("Bgr24", "Gray8"):
            raise ZStackError(f"{self.path}: pixels of type {pixel}; 8-bit RGB (Bgr24) or grey CZIs are read")
        rects: dict[int, set] = {}

        def seen(_, info) -> bool:
            c, r = info.coordinate.to_dict(), info.logicalRect
            if c.get("C", 0) == 0 and info.get_zoom() == 1.0:
                rects.setdefault(int(c.get("Z", 0)), set()).add((r.x, r.y, r.w, r.h))
            return True

        self._r.enumerate_subblocks(seen)
        missing = [z for z in range(z0, z1) if z not in rects]
        if missing:
            raise ZStackError(f"{self.path}: the dimension index gives planes {z0} to {z1 - 1} but plane(s) "
                              f"{missing} hold no image (a plane is missing)")
        extents = {z: _extent(r) for z, r in rects.items()}
        if len(set(extents.values())) > 1:
            raise ZStackError(f"{self.path}: planes of different sizes "
                              f"{sorted({(e[2] - e[0], e[3] - e[1]) for e in extents.values()})}")
        self._x0, self._y0, self._z0 = rect.x, rect.y, z0
        scale = _scaling(self._r.metadata)
        return ZStackInfo(z1 - z0, scale.get("Z"), rect.w, rect.h, scale.get("X"))

    def read(self, z: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Plane ``z``'s region (``x, y`` from the image's top-left; outside it is white glass)."""
        out, (x0, y0, x1, y1) = self.canvas(z, x, y, w, h)
        if x1 <= x0 or y1 <= y0:
            return out
        try:
            a = self._r.read(roi=(self._x0 + x0, self._y0 + y0, x1 - x0, y1 - y0),
                             plane={"Z": self._z0 + z, "C": 0, "T": 0}, background_pixel=(1.0, 1.0, 1.0))
        except Exception as e:
            raise ZStackError(f"{self.path}: cannot read plane {z} at ({x}, {y}): {e}") from None
        a = np.asarray(a)
        rgb = np.repeat(a[..., :1], 3, axis=2) if a.ndim == 2 or a.shape[2] == 1 else a[..., 2::-1]
        out[y0 - y:y1 - y, x0 - x:x1 - x] = rgb.reshape(y1 - y0, x1 - x0, 3)
        return out

    def close(self) -> None:
        self._r.close()


def _extent(rects: set) -> tuple[int, int, int, int]:
    return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[0] + r[2] for r in rects),
            max(r[1] + r[3] for r in rects))


def _scaling(meta: dict) -> dict[str, float]:
    """Micrometres per pixel (X) and per plane (Z) from the CZI's scaling metadata (metres in the file)."""
    try:
        items = meta["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError):
        return {}
    out = {}
    for d in items if isinstance(items, list) else [items]:
        try:
            v = float(d["Value"]) * 1e6
        except (KeyError, TypeError, ValueError):
            continue
        if v > 0:
            out[d.get("@Id", "")] = v
    return out
