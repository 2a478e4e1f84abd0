"""What every z-stack reader gives (:class:`ZStackInfo`, ``read(z, x, y, w, h)``) and how it refuses a file
(:class:`ZStackError`); the readers (``ome``, ``czi``) and the dispatch (``stack``) import it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytofm.data.sources.image_io import ImageReadError

TIFF_SUFFIXES = (".tif", ".tiff")
CZI_SUFFIXES = (".czi",)


class ZStackError(ImageReadError):
    """A z-stack that cannot be read as one: planes of different sizes, a plane missing, no z axis."""


@dataclass(frozen=True)
class ZStackInfo:
    n_planes: int
    z_spacing_um: float | None
    width: int
    height: int
    mpp: float | None


def no_plane(path, z, n_planes: int | None) -> ZStackError:
    there = f"the planes are 0 to {n_planes - 1}" if n_planes else "planes are numbered from 0"
    return ZStackError(f"{path}: no plane {z}; {there}")


class Closing:
    """``with reader:`` closes it (every reader and ``ZStackSource`` has ``close()``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZStackReader(Closing):
    """What the readers share: ``path``, ``info``, the check of a plane number, the white canvas of a
    region and the part of it inside the image."""

    path: Path
    info: ZStackInfo

    @classmethod
    def sniff(cls, path) -> bool:
        """Whether a file of this reader's suffixes holds a z-stack (a CZI always: any number of planes)."""
        return True

    def check_plane(self, z: int) -> None:
        if not 0 <= z < self.info.n_planes:
            raise no_plane(self.path, z, self.info.n_planes)

    def canvas(self, z: int, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """A white (glass) ``h`` x ``w`` region and the level-0 box ``(x0, y0, x1, y1)`` of it inside the
        image (empty when ``x1 <= x0`` or ``y1 <= y0``), after checking the plane."""
        self.check_plane(z)
        box = (max(x, 0), max(y, 0), min(x + w, self.info.width), min(y + h, self.info.height))
        return np.full((h, w, 3), 255, np.uint8), box
