"""Zeiss CZI z-stacks written by pylibCZIrw in the test from a real evaluation field (a synthetic smear
without the shared data), defocus growing with the distance from a planted sharp plane: planes, spacing,
pixel size, regions across subblocks and borders, the sharpest plane, prepare, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from cytofm.data.prepare.prepared import load_prepared
from cytofm.data.prepare.run import run_prepare
from cytofm.data.sources.zstack.source import ZStackSource
from cytofm.data.sources.zstack.stack import ZStackError, is_zstack_file, open_zstack

from tests.helpers import defocus_stack, eval_field, prepare_cfg

pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw (the [zstack] extra) is not installed")


def _write(path, planes, block: int = 128, zs=None, crop_plane=None):
    """Each plane in ``block`` px subblocks (as scanners write them), BGR as CZI stores it."""
    n, h, w = planes.shape[:3]
    with pyczi.create_czi(str(path), exist_ok=True) as out:
        for z in range(n):
            p = planes[z] if crop_plane != z else planes[z][: h // 2, : w // 2]
            for y in range(0, p.shape[0], block):
                for x in range(0, p.shape[1], block):
                    out.write(np.ascontiguousarray(p[y:y + block, x:x + block, ::-1]),
                              plane={"Z": z if zs is None else zs[z], "C": 0, "T": 0}, location=(x, y))
        out.write_metadata(scale_x=0.19e-6, scale_y=0.19e-6, scale_z=1.5e-6)
    return path


def test_planes_regions_and_the_sharp_plane(tmp_path):
    planes = defocus_stack(eval_field(), 3)
    path = _write(tmp_path / "z.czi", planes)
    assert is_zstack_file(path)
    with open_zstack(path) as s:
        i = s.info
        assert (i.n_planes, i.width, i.height) == (5, 320, 256)
        assert i.z_spacing_um == pytest.approx(1.5) and i.mpp == pytest.approx(0.19)
        for z in range(5):
            assert np.array_equal(s.read(z, 100, 90, 100, 90), planes[z, 90:180, 100:200])  # 4 subblocks
        edge = s.read(1, 300, 240, 40, 30)
        assert np.array_equal(edge[:16, :20], planes[1, 240:, 300:]) and (edge[16:] == 255).all()
        with pytest.raises(ZStackError, match="no plane 5; the planes are 0 to 4"):
            s.read(5, 0, 0, 8, 8)
    with ZStackSource(path) as src:
        assert src.select == "focus"  # no tile index: the planes are scored
        assert src.best(0, 0, 320, 256)[0] == 3


def test_prepare_reads_a_czi_folder(tmp_path):
    planes = defocus_stack(eval_field(), 1)
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "z.czi", planes)
    run_prepare([str(tmp_path / "in")], tmp_path / "o", prepare_cfg("tiling.patch_size=64"), log=lambda m: 0)
    (it,) = load_prepared(tmp_path / "o")
    assert it.kind == "zstack" and it.mpp == pytest.approx(0.19)
    assert (it.planes() == 1).mean() > 0.9  # blank-glass patches aside, the planted plane


def test_refusals(tmp_path):
    planes = defocus_stack(eval_field(), 2, n=3)
    with pytest.raises(ZStackError, match=r"plane\(s\) \[2\] hold no image"):
        open_zstack(_write(tmp_path / "gap.czi", planes, zs=[0, 1, 3]))
    with pytest.raises(ZStackError, match="planes of different sizes"):
        open_zstack(_write(tmp_path / "unequal.czi", planes, crop_plane=2))
    gap = np.full((64, 64, 3), 100, np.uint8)  # a tile scan with a hole: glass, not black
    with pyczi.create_czi(str(tmp_path / "holes.czi"), exist_ok=True) as out:
        for z in range(2):
            for x in (0, 128):
                out.write(gap, plane={"Z": z, "C": 0, "T": 0}, location=(x, 0))
    with open_zstack(tmp_path / "holes.czi") as s:
        region = s.read(1, 32, 0, 128, 64)
    assert (region[:, :32] == 100).all() and (region[:, 32:96] == 255).all() and (region[:, 96:] == 100).all()
    (tmp_path / "broken.czi").write_bytes(b"ZISRAWFILE" + b"\0" * 100)
    with pytest.raises(ZStackError, match="broken.czi: not a readable CZI"):
        open_zstack(tmp_path / "broken.czi")
