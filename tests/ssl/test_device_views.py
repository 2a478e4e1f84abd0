"""Views made on the device: the same distributions as the PIL path, pure functions of the iteration,
exact resume, and a decoded pool that says its size and spills to a memory map."""

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2

from cytofm.ssl.augment import MultiCrop
from cytofm.ssl.augment import hed_jitter as pil_hed_jitter
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.ssl.device_views import (
    DeviceBatches,
    DeviceMultiCrop,
    blur_views,
    colour_maps,
    crop_flip_rotate,
    hed_jitter,
    sample_boxes,
)
from cytofm.ssl.pool_cache import CacheTooLarge, build_cache

from tests.helpers import SHARED_DATA, run, smear, tiny_cfg

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.mark.parametrize("hw", [(100, 100), (480, 640), (40, 300)])
def test_crop_scale_and_aspect_follow_torchvision(hw):
    h, w = hw
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(torch.tensor([[h, w]] * 4000), (0.05, 0.4), g)
    bw, bh = (boxes[:, 2] - boxes[:, 0]).double(), (boxes[:, 3] - boxes[:, 1]).double()  # whole pixels
    torch.manual_seed(0)
    img = torch.zeros(3, h, w)
    ref = np.array([v2.RandomResizedCrop.get_params(img, [0.05, 0.4], [3 / 4, 4 / 3]) for _ in range(4000)])
    rh, rw = ref[:, 2], ref[:, 3]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    for ours, theirs in (((bw * bh / (h * w)).numpy(), rw * rh / (h * w)),
                         (torch.log(bw / bh).numpy(), np.log(rw / rh))):
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # where the box position was drawn, it is uniform over the free range (mean offset at half of it)
    free = (w - bw).numpy()
    sel = free > 0
    assert abs(float((boxes[:, 0].numpy()[sel] / free[sel]).mean()) - 0.5) < 0.03


def test_flips_and_rotations_reach_the_whole_symmetry_group_equally():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    group = {tuple(t.flatten().tolist()) for k in range(4)
             for t in (torch.rot90(x, k, (2, 3)), torch.rot90(x.flip(3), k, (2, 3)))}
    assert len(group) == 8
    n = 4000
    g = torch.Generator().manual_seed(1)
    u = torch.rand(n, 3, generator=g)
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0]]).expand(n, 4)
    v = crop_flip_rotate(x, torch.zeros(n, 1), boxes, 5, u, True)
    seen = [tuple(t.flatten().round().tolist()) for t in v]
    assert set(seen) == group
    counts = np.array([seen.count(e) for e in group])
    assert stats.chisquare(counts).pvalue > 1e-3
    v = crop_flip_rotate(x, torch.zeros(n, 1), boxes, 5, u, False)  # flips only
    assert ({tuple(t.flatten().round().tolist()) for t in v}
            == {tuple(x.flatten().tolist()), tuple(x.flip(3).flatten().tolist())})


def test_colour_maps_brightness_and_grayscale_by_hand():
    x = torch.rand(2, 3, 4, 4)
    mu = x.mean(dim=(2, 3))
    u = torch.tensor([[0.75, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])  # brightness 1 + 0.4*0.5 = 1.2; rest 1
    A, t = colour_maps(mu, torch.tensor([True, True]), torch.tensor([False, True]), u, 1.0, [0, 1, 2, 3])
    y = torch.baddbmm(t.unsqueeze(2), A, x.flatten(2)).view_as(x)
    assert torch.allclose(y[0], 1.2 * x[0], atol=1e-5)
    luma = (x[1] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    assert torch.allclose(y[1], luma.expand(3, 4, 4), atol=1e-5)
    # contrast blends towards the mean luma
    u = torch.tensor([[0.5, 0.0, 0.5, 0.5]])  # contrast 0.6
    A, t = colour_maps(mu[:1], torch.tensor([True]), torch.tensor([False]), u, 1.0, [1])
    y = torch.baddbmm(t.unsqueeze(2), A, x[:1].flatten(2)).view_as(x[:1])
    m = (mu[0] * torch.tensor([0.299, 0.587, 0.114])).sum()
    assert torch.allclose(y[0], 0.6 * x[0] + 0.4 * m, atol=1e-5)


def test_hed_jitter_is_the_pil_formula():
    rgb, _ = smear(h=16, w=16)
    u = torch.tensor([[0.1, 0.9, 0.5, 0.2, 0.7, 0.4]])
    ours = hed_jitter(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, torch.tensor([True]),
                      u, 0.05)

    class Fixed(random.Random):  # the PIL path draws alpha then beta with rng.uniform
        def __init__(self, vals):
            super().__init__(0)
            self.vals = list(vals)

        def uniform(self, a, b):
            return a + (b - a) * self.vals.pop(0)

    ref = pil_hed_jitter(Image.fromarray(rgb), 0.05, Fixed(u[0].tolist()))
    ref = torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255
    assert (ours[0] - ref).abs().max() < 1.5 / 255  # PIL rounds to uint8


def _real_or_synthetic(n=24):
    herlev = SHARED_DATA / "herlev"
    if (herlev / "manifest.csv").is_file():
        files = sorted(p for p in (herlev).rglob("*") if p.suffix.lower() in (".bmp", ".png", ".jpg"))
        files = [f for f in files if "mask" not in f.name.lower() and "-d" not in f.stem][:n]
        if len(files) >= n:
            return [Image.open(f).convert("RGB").resize((96, 96)) for f in files]
    return [Image.fromarray(smear(h=96, w=96, cells=((30 + i, 40, 15), (70, 60, 10)), seed=i)[0])
            for i in range(n)]


def _colour_stats(views: torch.Tensor, n_img: int, reps: int) -> dict:
    """views (reps * n_img, 3, h, w) in [0, 1], rep-major: pixel mean and spread, and how much the
    colour of one image's views varies (what colour jitter adds)."""
    per_view = views.mean(dim=(2, 3)).view(reps, n_img, 3)
    sat = (views.max(1).values - views.min(1).values).mean(dim=(1, 2)).view(reps, n_img)
    return {"mean": views.mean(dim=(0, 2, 3)), "std": views.std(dim=(0, 2, 3)),
            "sharpness": (views[..., 1:] - views[..., :-1]).abs().mean(dim=(1, 2, 3)),
            "view_colour_spread": per_view.std(dim=0).mean(0),
            "saturation_spread": sat.std(dim=0).mean()}


@pytest.mark.parametrize("preset_crops", [
    {"color_jitter": 1.0, "jitter_strength": 1.0, "grayscale": 0.2, "hed_jitter": 0.0,
     "blur": (0.0, 0.0, 0.0)},
    {"color_jitter": 0.0, "grayscale": 0.0, "hed_jitter": 1.0, "hed_sigma": 0.05, "blur": (0.0, 0.0, 0.0)},
])
def test_views_have_the_colour_statistics_of_the_pil_path(preset_crops):
    from cytofm.ssl.config import CropConfig

    cfg = CropConfig(global_size=64, global_scale=(0.5, 1.0), solarize=0.0, rotate90=False, **preset_crops)
    imgs = _real_or_synthetic()
    reps = 12
    a, b = _both_pipelines(cfg, imgs, reps)
    assert (torch.allclose(a["mean"], b["mean"], atol=0.02)
            and torch.allclose(a["std"], b["std"], atol=0.02)), (a, b)
    for k in ("view_colour_spread", "saturation_spread"):
        assert torch.allclose(a[k], b[k], rtol=0.25, atol=0.004), (k, a[k], b[k])
    assert a["view_colour_spread"].mean() > 0.02  # the statistic sees the jitter


def _both_pipelines(cfg, imgs, reps):
    pil = MultiCrop(cfg)
    rng = random.Random(0)
    torch.manual_seed(0)
    ref = torch.stack([pil(im, rng)[0] for _ in range(reps) for im in imgs])
    batch = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in imgs])
    sizes = torch.tensor([[im.size[1], im.size[0]] for im in imgs])
    g = torch.Generator().manual_seed(0)
    dev = torch.cat([DeviceMultiCrop(cfg)(batch, sizes, g)[0] for _ in range(reps)])
    return _colour_stats(ref * STD + MEAN, len(imgs), reps), _colour_stats(dev * STD + MEAN, len(imgs), reps)


def test_blur_removes_as_much_detail_as_the_pil_blur():
    """Whole-image crops at the image's own size, so that resampling (bilinear area samples here, PIL's
    bicubic there: up to ~25% apart in gradient energy on white noise) does not enter the comparison."""
    from cytofm.ssl.config import CropConfig

    rs = np.random.default_rng(0)
    imgs = [Image.fromarray(rs.integers(60, 200, (96, 96, 3), dtype=np.uint8)) for _ in range(24)]
    common = dict(global_size=96, global_scale=(1.0, 1.0), solarize=0.0, rotate90=False, color_jitter=0.0,
                  grayscale=0.0, hed_jitter=0.0)
    sharp = _both_pipelines(CropConfig(blur=(0.0, 0.0, 0.0), **common), imgs, 1)
    blurred = _both_pipelines(CropConfig(blur=(1.0, 1.0, 1.0), **common), imgs, 8)  # the median of 192 views
    assert torch.allclose(sharp[0]["sharpness"], sharp[1]["sharpness"], rtol=0.01)  # identity crops
    pil, dev = blurred[0]["sharpness"].numpy(), blurred[1]["sharpness"].numpy()
    # the blur is strong enough to be measured
    assert np.median(pil) < 0.5 * float(sharp[0]["sharpness"].mean())
    assert stats.ks_2samp(pil, dev).pvalue > 1e-3  # the same distribution of blur strength over 192 views


def test_batches_are_pure_and_masks_follow_the_config(images, tmp_path):
    cfg = tiny_cfg("mask.ratio=[0.3]", "mask.ratio_var=[0.0]", "crops.global_size=64")
    tables = [load_table(images)]
    b = PretrainingBatches(tables, cfg, 0, 16)
    d = DeviceBatches.of(b, log=lambda m: None)
    cpu = torch.device("cpu")
    v1, v2_ = d.views(d[3], cpu), d.views(d[3], cpu)
    assert all(torch.equal(x, y) for x, y in zip(v1["crops"], v2_["crops"], strict=True))
    assert not torch.equal(v1["crops"][0], d.views(d[4], cpu)["crops"][0])
    assert [c.shape for c in v1["crops"]] == [(4, 3, 64, 64)] * 2 + [(4, 3, 16, 16)] * 2
    d.views_in_loader = True  # made in a CPU loader process instead: the same views
    assert all(torch.equal(x, y) for x, y in zip(v1["crops"], d[3]["crops"], strict=True))
    d.views_in_loader = False
    # block masks at ratio 0.3 on a 4x4 grid: the same loop as the PIL path, so the same mean count
    dev_counts = np.mean([d[i]["masks"].sum().item() for i in range(50)])
    pil_counts = np.mean([b[i]["masks"].sum().item() for i in range(50)])
    assert abs(dev_counts - pil_counts) < 0.15 * pil_counts


def test_resume_with_device_views_is_exact(images, tmp_path):
    extra = ("data.views=device", "train.iterations=4", "train.save_every=100")
    straight = run(tiny_cfg(*extra), images, tmp_path / "a")
    run(tiny_cfg(*extra, "train.stop_at=2"), images, tmp_path / "b")
    resumed = run(tiny_cfg(*extra), images, tmp_path / "b")
    assert resumed.start_iter == 2
    for k, v in straight.student.state_dict().items():
        assert torch.equal(v, resumed.student.state_dict()[k]), k


def test_cache_says_its_size_and_spills_to_a_memory_map(tmp_path):
    imgs = [Image.fromarray(smear(h=60, w=80, seed=i)[0]) for i in range(5)]
    said = []
    with pytest.raises(CacheTooLarge, match="needs"):
        build_cache(lambda i: imgs[i].size, lambda i: imgs[i], 5, 64, budget=1000, log=said.append)
    cache = build_cache(lambda i: imgs[i].size, lambda i: imgs[i], 5, 64, spill_dir=tmp_path, budget=1000,
                        log=said.append)
    assert (tmp_path / "view_cache.u8").stat().st_size == 5 * 3 * 48 * 64
    assert "memory-mapped" in said[-1] and "0 MiB" in said[-1]
    batch, sizes = cache.batch([0, 4])
    assert sizes.tolist() == [[48, 64], [48, 64]]
    ref = np.asarray(imgs[4].resize((64, 48), Image.Resampling.BICUBIC, reducing_gap=2.0))
    assert np.array_equal(batch[1].permute(1, 2, 0).numpy(), ref)


def test_threads_decode_the_same_cache_as_one():
    rs = np.random.default_rng(3)
    imgs = [Image.fromarray(rs.integers(0, 255, (int(rs.integers(20, 90)), int(rs.integers(20, 90)), 3),
                                        dtype=np.uint8)) for _ in range(40)]
    size = [im.size for im in imgs]
    size[7] = size[7][::-1]  # a header that names the other orientation
    one = build_cache(lambda i: size[i], lambda i: imgs[i], 40, 64, log=lambda m: None)
    four = build_cache(lambda i: size[i], lambda i: imgs[i], 40, 64, log=lambda m: None, workers=4)
    assert np.array_equal(one.shapes, four.shapes)
    for i in range(40):
        a, b = one.batch([i])[0], four.batch([i])[0]
        assert torch.equal(a, b), i


def test_padding_repeats_edges():
    imgs = [Image.fromarray(np.full((10, 20, 3), 200, np.uint8)),
            Image.fromarray(np.full((30, 30, 3), 50, np.uint8))]
    cache = build_cache(lambda i: imgs[i].size, lambda i: imgs[i], 2, 64, log=lambda m: None)
    batch, _ = cache.batch([0, 1])
    assert batch.shape == (2, 3, 30, 30) and (batch[0] == 200).all()
    assert math.isclose(float(batch[1].float().mean()), 50.0)


def test_cache_keeps_the_decoded_orientation_when_a_header_said_otherwise():
    # decoded 50 x 30; the "header" says 30 x 50 (EXIF-rotated file)
    im = Image.fromarray(smear(h=30, w=50)[0])
    cache = build_cache(lambda i: (30, 50), lambda i: im, 1, 64, log=lambda m: None)
    batch, sizes = cache.batch([0])
    assert sizes.tolist() == [[30, 50]] and np.array_equal(batch[0].permute(1, 2, 0).numpy(), np.asarray(im))


def test_dense_and_subset_paths_make_the_same_views(monkeypatch):
    """The GPU computes every view and keeps the right ones (no nonzero); the CPU computes only those."""
    from cytofm.ssl import device_views
    from cytofm.ssl.config import CropConfig

    crop = DeviceMultiCrop(CropConfig(global_size=32, local_size=16, n_local=3, hed_jitter=0.5, solarize=0.5))
    pixels = torch.randint(0, 256, (4, 3, 40, 56), dtype=torch.uint8)
    sizes = torch.tensor([[40, 56], [33, 50], [40, 20], [12, 56]])
    out = {}
    for dense in (False, True):
        monkeypatch.setattr(device_views, "DENSE_SUBSETS", dense)
        out[dense] = crop(pixels, sizes, torch.Generator().manual_seed(5))
    for a, b in zip(out[False], out[True], strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_transposed_crops_equal_crops_read_from_the_transposed_image():
    """A transposed view is the crop, transposed: the same as reading the transposed image at the
    transposed box."""
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 9, 14, generator=g)
    n = 64
    sizes = torch.tensor([[9, 14]]).repeat(n, 1)
    boxes = sample_boxes(sizes, (0.1, 1.0), g)
    bidx = torch.arange(2).repeat(n // 2).unsqueeze(1).float()
    u = torch.rand(n, 3, generator=g)
    ours = crop_flip_rotate(x, bidx, boxes, 6, u, True)
    x_t = x.transpose(2, 3).contiguous()
    for i in range(n):  # the reference: each view from the plain or the transposed image, boxes swapped
        b = boxes[i].clone()
        if u[i, 0] < 0.5:
            b = b[[2, 1, 0, 3]]
        if u[i, 1] < 0.5:
            b = b[[0, 3, 2, 1]]
        src, b = (x_t, b[[1, 0, 3, 2]]) if u[i, 2] < 0.5 else (x, b)
        ref = roi_align(src, torch.cat([bidx[i], b])[None], (6, 6), 1.0, 2, True)[0]
        assert torch.allclose(ours[i], ref, atol=1e-6), i


def test_blur_band_sized_by_the_bound_gives_the_same_matrices():
    from cytofm.ssl.blur import blur_matrix

    sigma = 0.1 + 1.9 * torch.rand(50, generator=torch.Generator().manual_seed(0))
    tight = blur_matrix(sigma, 24, float(sigma.max()))
    assert torch.equal(blur_matrix(sigma, 24, 2.0), tight)
    assert torch.equal(blur_matrix(sigma, 24, 5.0), tight)  # bases for larger radii, unused
    assert not torch.equal(blur_matrix(sigma, 24, 0.1), tight)  # a band too narrow would show


def _three_box_passes(sigma: float, size: int) -> np.ndarray:
    """The blur matrix from its definition: Pillow's extended box blur (integer radius lo, fractional
    weight a at lo + 1, variance sigma^2 / 3 per pass), three passes, edge pixels repeated, applied to
    every unit vector."""
    s2 = sigma ** 2 / 3
    lo = math.floor(((12 * s2 + 1) ** 0.5 - 1) / 2)
    a = (2 * lo + 1) * (lo * (lo + 1) - 3 * s2) / (6 * (s2 - (lo + 1) ** 2))
    out = np.eye(size)
    for _ in range(3):
        nxt = np.zeros_like(out)
        for i in range(size):
            for d in range(-lo - 1, lo + 2):
                w = a if abs(d) == lo + 1 else 1.0
                nxt[i] += w * out[min(max(i + d, 0), size - 1)]
        out = nxt / (2 * lo + 1 + 2 * a)
    return out


def test_blur_matrices_are_three_box_passes():
    """Made from cubic-in-a bases (one set per integer radius): the same as the three passes by hand."""
    from cytofm.ssl.blur import blur_matrix

    sigma = torch.tensor([0.1, 0.5, 1.0, 1.41, 1.4143, 2.0, 2.8, 3.0])  # radii 0, 1 (from sqrt 2) and 2
    ours = blur_matrix(sigma, 11, 3.0)
    for s, m in zip(sigma.tolist(), ours, strict=True):
        assert np.allclose(m.numpy(), _three_box_passes(s, 11), atol=1e-6), s


def test_blur_follows_pil_gaussian_blur_on_an_image():
    """The blur (bf16 products, row sums divided out) against PIL's own GaussianBlur on a smear, pixel by
    pixel: within the rounding of PIL's integer passes and of bf16 (8 bits of mantissa)."""
    from PIL import ImageFilter


    rgb = smear(h=40, w=56, cells=((20, 18, 10), (42, 26, 7)))[0]  # two stained cells on glass
    x = torch.from_numpy(rgb.astype(np.int16)).permute(2, 0, 1)[None].float() / 255
    for s in (0.5, 1.0, 2.0):
        ref = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius=s))).astype(float)
        for dt in (torch.float32, torch.bfloat16):
            ours = blur_views(x.clone(), torch.tensor([True]), torch.tensor([s]), dtype=dt)
            d = ours[0].permute(1, 2, 0).numpy() * 255 - ref
            # within 3 levels everywhere (a radius 30% off, or no blur, is 14 or more levels off somewhere),
            # and no brightness shift beyond half a level (bf16 matrices without their row sums divided
            # out: up to 0.9)
            assert np.abs(d).max() < 3 and np.abs(d).mean() < 0.75 and abs(d.mean()) < 0.5, (s, dt)


def test_blur_of_a_batch_equals_the_blur_of_each_view():
    """Each view its own radius, non-square views, radii past the bound clamped to it."""

    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 12, 17, generator=g)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0, 3.5])
    both = blur_views(x.clone(), torch.ones(5, dtype=torch.bool), sigma, dtype=torch.float32)
    for i in range(5):
        one = blur_views(x[i:i + 1].clone(), torch.tensor([True]), sigma[i:i + 1], dtype=torch.float32)
        assert torch.allclose(both[i], one[0], atol=1e-6), i
    assert torch.allclose(both[4], blur_views(x[4:].clone(), torch.tensor([True]), torch.tensor([2.0]))[0],
                          atol=1e-2)  # 3.5 is blurred as 2.0, in brightness too
    assert torch.allclose(both.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=2e-2)
