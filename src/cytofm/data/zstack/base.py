"""What every z-stack reader gives (:class:`ZStackInfo`, ``read(z, x, y, w, h)``) and how it refuses a file
(:class:`ZStackError`); the readers (``ome``, ``czi``) and the dispatch (``stack``) import it."""

from __future__ import annotations

from dataclasses import dataclass

from cytofm.data.image_io import ImageReadError

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


class Closing:
    """``with reader:`` closes it (every reader and ``ZStackSource`` has ``close()``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
