"""OME-TIFF z-stacks written by tifffile in the test from a real field (a synthetic smear without the
shared data), defocus growing with the distance from a planted sharp plane: planes, spacing, regions that
cross tiles and borders, the sharpest plane found, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cytofm.data.sources.zstack.ome import OmeZStack
from cytofm.data.sources.zstack.source import ZStackSource
from cytofm.data.sources.zstack.stack import ZStackError

from tests.helpers import defocus_stack, eval_field, write_ome_zstack


def _field() -> np.ndarray:
    return eval_field()


def _stack(path: Path, sharp: int, n: int = 5, tile: tuple[int, int] | None = (64, 64),
           compression=None) -> np.ndarray:
    planes = defocus_stack(_field(), sharp, n)
    write_ome_zstack(path, planes, tile=tile, compression=compression)
    if compression == "jpeg":  # lossy: what the file holds is what tifffile decodes whole
        planes = tifffile.imread(path)
    return planes


def _jpeg() -> str:
    pytest.importorskip("imagecodecs", reason="JPEG tiles need imagecodecs (the [zstack] extra)")
    return "jpeg"


@pytest.mark.parametrize("tile, compression", [((64, 64), None), (None, None), ((64, 64), "zlib"),
                                               ((64, 64), "jpeg")])
def test_planes_and_regions_read_as_written(tmp_path, tile, compression):
    compression = _jpeg() if compression == "jpeg" else compression
    planes = _stack(tmp_path / "z.ome.tif", sharp=3, tile=tile, compression=compression)
    with OmeZStack(tmp_path / "z.ome.tif") as s:
        assert (s.info.n_planes, s.info.z_spacing_um, s.info.width, s.info.height, s.info.mpp) == \
            (5, 1.5, 320, 256, 0.19)
        for z in range(5):
            assert np.array_equal(s.read(z, 50, 30, 100, 90), planes[z, 30:120, 50:150])  # across tiles
        edge = s.read(1, 300, 240, 40, 30)  # past the right and bottom borders: white glass
        assert np.array_equal(edge[:16, :20], planes[1, 240:, 300:]) and (edge[16:] == 255).all()


def test_the_planted_sharp_plane_is_the_best(tmp_path):
    for sharp in (0, 2, 4):
        _stack(tmp_path / f"z{sharp}.ome.tif", sharp=sharp)
        with ZStackSource(tmp_path / f"z{sharp}.ome.tif", select="focus") as s:
            z, scores = s.best(0, 0, 320, 256)
        assert z == sharp and list(np.argsort(-scores))[0] == sharp
        assert all(scores[k] > scores[k + 1] for k in range(sharp, 4))  # falls away from the sharp plane
        assert all(scores[k] < scores[k + 1] for k in range(sharp))


def test_refusals_name_the_file_and_the_planes(tmp_path):
    _stack(tmp_path / "z.ome.tif", sharp=1, n=3)
    with OmeZStack(tmp_path / "z.ome.tif") as s, pytest.raises(ZStackError, match="no plane 3; the planes "
                                                                                  "are 0 to 2"):
        s.read(3, 0, 0, 10, 10)
    tifffile.imwrite(tmp_path / "flat.tif", _field(), photometric="rgb")
    with pytest.raises(ZStackError, match="flat.tif: no z axis"):
        OmeZStack(tmp_path / "flat.tif")
    channels = np.zeros((3, 2, 32, 32), np.uint8)  # fluorescence-like: two channels per plane
    tifffile.imwrite(tmp_path / "zc.ome.tif", channels, ome=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ZStackError, match="zc.ome.tif: axes ZCYX with 2 along C"):
        OmeZStack(tmp_path / "zc.ome.tif")
    deep = np.zeros((3, 32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "deep.ome.tif", deep, ome=True, metadata={"axes": "ZYX"})
    with pytest.raises(ZStackError, match="deep.ome.tif: planes of uint16 samples"):
        OmeZStack(tmp_path / "deep.ome.tif")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ZStackError, match="broken.tif: not a readable TIFF"):
        OmeZStack(tmp_path / "broken.tif")
