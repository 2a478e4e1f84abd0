"""Focal planes as an augmentation: under ``--z all`` a region's planes are one sample and each view is made
from a plane drawn uniformly, on both view paths."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from cytofm.data.prepare.run import run_prepare
from cytofm.ssl.augment import MultiCrop
from cytofm.ssl.config import CropConfig
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.ssl.device_views import DeviceBatches, DeviceMultiCrop

from tests.helpers import defocus_stack, eval_field, prepare_cfg, tiny_cfg, write_ome_zstack

# no colour change and no blur: a view of a flat grey image is that grey, so it names its plane
PLAIN = CropConfig(global_size=32, local_size=16, n_local=6, color_jitter=0.0, grayscale=0.0, hed_jitter=0.0,
                   blur=(0.0, 0.0, 0.0), solarize=0.0)
GREYS = (20, 70, 120, 170, 220)


def _plane_of(view: torch.Tensor) -> int:
    grey = float(view[0].mean()) * 0.229 + 0.485  # back from the normalisation of channel 0
    return int(np.argmin([abs(grey * 255 - v) for v in GREYS]))


def test_pil_views_draw_planes_uniformly_and_one_plane_is_unchanged():
    planes = [Image.new("RGB", (48, 48), (v, v, v)) for v in GREYS]
    crop, rng = MultiCrop(PLAIN), random.Random(0)
    seen = Counter(_plane_of(v) for _ in range(100) for v in crop(planes, rng))
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert all(abs(n / 800 - 0.2) < 0.04 for n in seen.values())  # 800 views, uniform within 4 sd
    # a list of one plane is the image itself: the same random stream, the same views
    a = crop([planes[2]], random.Random(5))
    b = crop(planes[2], random.Random(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_device_views_stay_within_each_samples_planes():
    counts = torch.tensor([3, 1, 1])  # sample 0: planes 0-2; sample 1: plane 3; sample 2: plane 4
    images = torch.stack([torch.full((3, 48, 48), v, dtype=torch.uint8) for v in GREYS])
    sizes = torch.full((5, 2), 48)
    g = torch.Generator().manual_seed(0)
    crop = DeviceMultiCrop(PLAIN)
    per_sample = [Counter(), Counter(), Counter()]
    for _ in range(60):
        for view in crop(images, sizes, g, counts):
            assert view.shape[0] == 3
            for b in range(3):
                per_sample[b][_plane_of(view[b])] += 1
    assert set(per_sample[1]) == {3} and set(per_sample[2]) == {4}
    assert sorted(per_sample[0]) == [0, 1, 2]
    assert all(abs(n / 480 - 1 / 3) < 0.07 for n in per_sample[0].values())  # 480 views, within 4 sd
    # without counts, one image per sample as before
    assert crop(images[:3], sizes[:3], torch.Generator().manual_seed(1))[0].shape[0] == 3


def _all_planes(tmp_path) -> np.ndarray:
    planes = defocus_stack(eval_field(128, 192), 1)
    (tmp_path / "in").mkdir()
    write_ome_zstack(tmp_path / "in" / "z.ome.tif", planes)
    run_prepare([str(tmp_path / "in")], tmp_path / "p", prepare_cfg("tiling.patch_size=64", "zstack.z=all"),
                log=lambda m: 0)
    return planes


def test_a_regions_planes_are_one_sample_in_the_pool(tmp_path):
    planes = _all_planes(tmp_path)
    apart, grouped = load_table(tmp_path / "p"), load_table(tmp_path / "p", plane_views=True)
    assert len(apart) == 5 * len(grouped) and len(grouped) > 1
    b = PretrainingBatches([grouped], tiny_cfg())
    for ref in grouped.refs:
        group = grouped.group(ref)
        assert [grouped.files[f][3] for f, _, _ in group] == ["0", "1", "2", "3", "4"]
        x, y = int(ref[1]), int(ref[2])
        for z, r in enumerate(group):
            assert np.array_equal(np.asarray(b.sample_image(grouped, r)), planes[z, y:y + 64, x:x + 64])
    # the device pool: every plane of every sample decoded, views drawn from a sample's own five
    d = DeviceBatches.of(b, log=lambda m: None)
    assert len(d.cache) == 5 * len(grouped)
    raw, B = d[0], tiny_cfg().train.batch_size
    assert raw["counts"].tolist() == [5] * B and raw["images"].shape[0] == 5 * B
    assert [c.shape[0] for c in d.views(raw, torch.device("cpu"))["crops"]] == [B] * 4


@pytest.mark.parametrize("views", ["pil", "device"])
def test_pretraining_runs_on_plane_views(tmp_path, views):
    from cytofm.ssl.trainer import SSLTrainer

    _all_planes(tmp_path)
    t = SSLTrainer(tiny_cfg("train.iterations=2", f"data.views={views}", "data.num_workers=0"),
                   [str(tmp_path / "p")], tmp_path / "run", log=lambda m: None)
    assert sum(len(x) for x in t.tables) == len(load_table(tmp_path / "p")) // 5  # one sample per region
    t.run()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
