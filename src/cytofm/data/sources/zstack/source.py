"""A z-stack read as any other source, under a plane policy (``prepare --z``).

``best``: each region from its sharpest plane (prepare records the plane of every patch, and later reads
take that plane); ``edf``: the planes fused by local focus (``cytofm.data.sources.zstack.edf``); a plane
number:
that plane; ``all``: every plane its own instance (prepare writes each patch once per plane with its
plane; a read without a plane takes the best; pretraining makes a region's planes one sample, each view
from one of them: ``data.plane_views``). Regions, never planes, are held in memory, so a stack
costs the memory of one plane's regions.

The sharpest plane is found one of two ways (``select``). ``focus`` decodes the region in every plane and
takes the highest focus score (``cytofm.data.prepare.focus``): exact, and for five planes about five times the
cost of reading one, since decoding dominates. ``bytes`` reads no pixels: of the same region, the plane
with the most fine detail compresses largest, and tile sizes are in the file's index, so the choice costs
nothing and only the chosen plane is decoded (its focus is then scored). That holds for lossy codecs
(JPEG and its kin, what scanners write: 97 % the focus score's plane, the rest within 6 % of its score),
not for lossless ones, whose bytes go to sensor noise (2 %; ``benchmarks/zstack.py``, select). ``auto``
(default) takes ``bytes`` for lossy tiles and ``focus`` otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cytofm.data.sources.image_io import resize_rgb as _resize
from cytofm.data.sources.zstack.base import Closing, ZStackError, no_plane
from cytofm.data.sources.zstack.stack import open_zstack

POLICIES = ("best", "edf", "all")
SELECTS = ("auto", "bytes", "focus")


def parse_policy(z: str | int | None, n_planes: int | None = None, path: str = "") -> str | int:
    """``best``, ``edf``, ``all`` or a plane number (checked against ``n_planes`` when given)."""
    z = "best" if z is None or z == "" else z
    if isinstance(z, str) and z.strip().lower() in POLICIES:
        return z.strip().lower()
    try:
        k = int(z)
    except (TypeError, ValueError):
        raise ZStackError(f"--z {z}: give best, edf, all or a plane number") from None
    if k < 0 or (n_planes is not None and k >= n_planes):
        raise no_plane(path or "--z", k, n_planes)
    return k


class ZStackSource(Closing):
    kind = "zstack"
    level = 0
    conversion = ""

    def __init__(self, path: str | os.PathLike, mpp: float | None = None, z: str | int | None = "best",
                 select: str = "auto"):
        self.path = Path(path)
        self.stack = open_zstack(self.path)
        info = self.stack.info
        self.width, self.height, self.n_planes = info.width, info.height, info.n_planes
        self.z_spacing_um = info.z_spacing_um
        self.mpp = mpp if mpp else info.mpp
        try:
            self.policy = parse_policy(z, info.n_planes, str(self.path))
            self.select = self._select(select)
        except ZStackError:
            self.stack.close()
            raise

    def _select(self, select: str) -> str:
        if select not in SELECTS:
            raise ZStackError(f"zstack.select={select}: give one of {', '.join(SELECTS)}")
        if select == "auto":
            return "bytes" if self.stack.lossy else "focus"
        if select == "bytes" and not self.stack.compressed:
            raise ZStackError(f"{self.path}: zstack.select=bytes needs compressed tiles; these planes are "
                              "stored uncompressed or in strips (use focus or auto)")
        return select

    def read(self, x: int, y: int, size0: int | tuple[int, int], out: int | tuple[int, int] | None = None,
             z: int | None = None) -> np.ndarray:
        """A region as every source reads it; ``z`` (a recorded plane) overrides the policy."""
        sw, sh = (size0, size0) if isinstance(size0, int) else size0
        if z is None and isinstance(self.policy, int):
            z = self.policy
        if z is not None:
            region = self.stack.read(int(z), int(x), int(y), sw, sh)
        elif self.policy == "edf":
            from cytofm.data.sources.zstack.edf import fused_region

            region = fused_region(self.stack.read, self.n_planes, int(x), int(y), sw, sh)
        else:
            return self._best(int(x), int(y), sw, sh, out)[2]
        return _resize(region, out) if out is not None else region

    def best(self, x: int, y: int, sw: int, sh: int, out=None) -> tuple[int, np.ndarray]:
        """The sharpest plane of a region by ``select`` (focus: scored as embedded, resampled to ``out``),
        and every plane's score (focus scores, or stored bytes)."""
        return self._best(x, y, sw, sh, out)[:2]

    def _best(self, x: int, y: int, sw: int, sh: int, out) -> tuple[int, np.ndarray, np.ndarray]:
        """:meth:`best` and the chosen plane's region as read (each plane decoded once)."""
        from cytofm.data.prepare.focus import focus_score

        if self.select == "bytes":
            scores = np.array([self.stack.stored_bytes(z, x, y, sw, sh) for z in range(self.n_planes)])
            z = int(np.argmax(scores))
            return z, scores, self.read(x, y, (sw, sh), out, z=z)
        regions = [self.read(x, y, (sw, sh), out, z=z) for z in range(self.n_planes)]
        scores = np.array([focus_score(r)[0] for r in regions])
        z = int(np.argmax(scores))
        return z, scores, regions[z]

    def stored_bytes(self, coords: np.ndarray, size0: tuple[int, int]) -> np.ndarray:
        """(planes, N) compressed bytes under each region (level-0 top-left ``coords``, ``size0``)."""
        sw, sh = size0
        return np.array([[self.stack.stored_bytes(z, int(x), int(y), sw, sh) for x, y in coords]
                         for z in range(self.n_planes)]).reshape(self.n_planes, len(coords))

    def plane(self, z: int) -> _Plane:
        return _Plane(self, z)

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """A thumbnail of the policy's plane (the middle one for best, edf and all: every plane outlines
        the same material, blurred or not), decoded in bands of rows so that no plane is held."""
        z = self.policy if isinstance(self.policy, int) else self.n_planes // 2
        return self.plane(z).thumbnail(max_side)

    def close(self) -> None:
        self.stack.close()


class _Plane:
    """One plane of a stack with the source interface (focus scoring reads planes one by one)."""

    def __init__(self, src: ZStackSource, z: int):
        self.src, self.z = src, z
        self.width, self.height, self.mpp = src.width, src.height, src.mpp

    def read(self, x: int, y: int, size0, out=None) -> np.ndarray:
        return self.src.read(x, y, size0, out, z=self.z)

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        from PIL import Image

        w, h = self.width, self.height
        scale = min(1.0, max_side / max(w, h))
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        band = 512 if scale < 1 else h  # 512 rows of a 40000-wide plane: 61 MB
        rows = []
        for y in range(0, h, band):
            bh = min(band, h - y)
            part = self.src.stack.read(self.z, 0, y, w, bh)
            rows.append(np.asarray(Image.fromarray(part).resize((tw, max(1, round(bh * scale))),
                                                               Image.Resampling.BOX)))
        thumb = np.concatenate(rows, 0)
        return _resize(thumb, (tw, th)), tw / w
