"""Pretraining on a prepared z-stack reads every patch from the plane prepare recorded for it."""

from __future__ import annotations

import numpy as np
import pytest

from cytofm.data.prepare.run import run_prepare
from cytofm.ssl.data import PretrainingBatches, load_table

from tests.helpers import defocus_stack, eval_field, prepare_cfg, tiny_cfg, write_ome_zstack


@pytest.mark.parametrize("policy", ["all", "best"])
def test_each_patch_from_its_plane(tmp_path, policy):
    planes = defocus_stack(eval_field(128, 192), 1)
    (tmp_path / "in").mkdir()
    write_ome_zstack(tmp_path / "in" / "z.ome.tif", planes)
    cfg = prepare_cfg("tiling.patch_size=64", f"zstack.z={policy}")
    run_prepare([str(tmp_path / "in")], tmp_path / "p", cfg, log=lambda m: 0)
    table = load_table(tmp_path / "p")
    batches = PretrainingBatches([table], tiny_cfg())
    seen = {}
    for r in table.refs:
        z = table.files[int(r[0])][3]
        x, y = int(r[1]), int(r[2])
        assert np.array_equal(np.asarray(batches.sample_image(table, r)), planes[int(z), y:y + 64, x:x + 64])
        seen.setdefault((x, y), set()).add(z)
    assert len(table) == (5 if policy == "all" else 1) * len(seen)
    assert all(v == ({"0", "1", "2", "3", "4"} if policy == "all" else {"1"}) for v in seen.values())
