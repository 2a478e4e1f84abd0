"""Multi-crop views made in batches on the training device, from a pool decoded once.

The PIL path (:mod:`cytofm.ssl.augment`) decodes, crops and jitters one image at a time in loader
processes; at GPU speeds those processes, not the GPU, set the pace. Here every sample of the pool is
decoded once into uint8 (:mod:`cytofm.ssl.pool_cache`, in memory or memory-mapped), and each batch's views
are made with a handful of batched tensor operations on the device: one ``roi_align`` per view size for the
random resized crops (it averages up to 2 x 2 samples per output pixel, so downscaling is antialiased),
flips as reversed boxes and 90-degree rotations as transposes of the crops, HED stain jitter, RGB jitter and
grayscale as one affine colour map per view, Gaussian blur, solarisation and normalisation, each with its
own parameters per view. torchvision's transforms draw one parameter set per call, so per-view parameters
for a whole batch in one call take the few lines written here. Block masks are drawn by the same reference
loop as the PIL path (a sequential algorithm; about 0.1 ms a mask).

Every random number comes from a generator seeded with (seed, iteration, rank): a batch is a pure
function of them, on any device, so resume stays exact. On a GPU nothing here makes the host wait for the
device (no ``nonzero``, ``item`` or blocking copy; ``tests/ssl/test_host_sync.py``): the host queues the
next batch's views while the device still runs the previous step. ``tests/ssl/test_device_views.py`` shows
that both pipelines draw views from the same distributions (crop scale and aspect, colour statistics, masks).
"""

from __future__ import annotations

import math
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torchvision.ops import roi_align

from cytofm.ssl import augment
from cytofm.ssl.blur import gaussian_blur
from cytofm.ssl.config import CropConfig, PretrainConfig
from cytofm.ssl.masking import make_mask, masked_positions
from cytofm.ssl.pool_cache import ViewCache, build_cache

HED_FROM_RGB = torch.from_numpy(augment.HED_FROM_RGB).float()  # the PIL path's stain vectors, one source
RGB_FROM_HED = torch.from_numpy(augment.RGB_FROM_HED).float()
_GRAY = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2 luma, as PIL's convert("L")


# --- random parameters --------------------------------------------------------------------------------
def sample_boxes(sizes: torch.Tensor, scale: tuple[float, float], g: torch.Generator,
                 ratio=(3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:
    """Random-resized-crop boxes (x0, y0, x1, y1), one per row of ``sizes`` (h, w), drawn as torchvision's
    ``RandomResizedCrop.get_params``: area fraction U(scale), log-uniform aspect, first of ``tries``
    candidates that fits, else the central crop with the aspect clamped into ``ratio``."""
    dev = sizes.device
    n = sizes.shape[0]
    h, w = sizes[:, 0:1].float(), sizes[:, 1:2].float()
    area = h * w
    u = torch.rand(n, tries, 4, generator=g, device=dev)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    ar = torch.exp(logr)
    cw = torch.round(torch.sqrt(target * ar))
    ch = torch.round(torch.sqrt(target / ar))
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=dev))
    pick = first.clamp(min=0).unsqueeze(1)
    bw, bh = cw.gather(1, pick).squeeze(1), ch.gather(1, pick).squeeze(1)
    x0 = torch.floor(u[..., 2].gather(1, pick).squeeze(1) * (w.squeeze(1) - bw + 1))
    y0 = torch.floor(u[..., 3].gather(1, pick).squeeze(1) * (h.squeeze(1) - bh + 1))
    # fallback: central crop, aspect clamped
    W, H = w.squeeze(1), h.squeeze(1)
    in_r = W / H
    fw = torch.where(in_r < ratio[0], W, torch.where(in_r > ratio[1], torch.round(H * ratio[1]), W))
    fh = torch.where(in_r < ratio[0], torch.round(W / ratio[0]), torch.where(in_r > ratio[1], H, H))
    miss = first < 0
    bw, bh = torch.where(miss, fw, bw), torch.where(miss, fh, bh)
    x0 = torch.where(miss, torch.floor((W - fw) / 2), x0)
    y0 = torch.where(miss, torch.floor((H - fh) / 2), y0)
    return torch.stack([x0, y0, x0 + bw, y0 + bh], 1)


_ON_DEVICE: dict[tuple, torch.Tensor] = {}


def _const(t: torch.Tensor, dev: torch.device, dt: torch.dtype | None = None) -> torch.Tensor:
    """A module-level constant (it lives as long as the module: its id stays its own) on ``dev``, copied
    there once: a blocking copy from host memory would make the host wait for the device at every use."""
    key = (id(t), str(dev), dt)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = t.to(dev, dt if dt is not None else t.dtype)
    return _ON_DEVICE[key]


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * _const(_GRAY, x.device, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)  # on the host once (on a GPU its error check would wait for the device)


def colour_maps(mu: torch.Tensor, apply: torch.Tensor, gray: torch.Tensor, u: torch.Tensor, strength: float,
                order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view affine colour map ``y = A x + t`` for torchvision's
    ColorJitter(0.4s, 0.4s, 0.2s, min(0.1s, 0.5)) (brightness, contrast, saturation and hue composed in
    ``order``; hue as a rotation in YIQ space) followed by grayscale where ``gray``. One 3x3 map per view
    costs one batched product instead of an HSV round trip; it differs from torchvision only in clamping
    once at the end. ``mu`` (N, 3): each view's mean RGB (what contrast blends towards); ``u`` (N, 4)
    uniforms."""
    n, dev, dt = mu.shape[0], mu.device, mu.dtype
    g = _const(_GRAY, dev, dt)
    eye = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
    A, t = eye.clone(), torch.zeros(n, 3, device=dev, dtype=dt)
    b = 1 + 0.4 * strength * (2 * u[:, 0] - 1)
    c = 1 + 0.4 * strength * (2 * u[:, 1] - 1)
    s = 1 + 0.2 * strength * (2 * u[:, 2] - 1)
    theta = 2 * math.pi * min(0.1 * strength, 0.5) * (2 * u[:, 3] - 1)
    to_gray = torch.ones(3, 1, device=dev, dtype=dt) @ g.view(1, 3)  # every channel <- luma
    yiq, yiq_inv = _const(_YIQ, dev, dt), _const(_YIQ_INV, dev, dt)
    for op in order:
        if op == 0:
            M, off = b.view(-1, 1, 1) * eye, 0
        elif op == 1:
            m = (torch.einsum("nij,nj->ni", A, mu) + t) @ g  # mean luma at this point
            M, off = c.view(-1, 1, 1) * eye, ((1 - c) * m).view(-1, 1).expand(n, 3)
        elif op == 2:
            M, off = s.view(-1, 1, 1) * eye + (1 - s).view(-1, 1, 1) * to_gray, 0
        else:
            cos, sin = torch.cos(theta), torch.sin(theta)
            R = torch.zeros(n, 3, 3, device=dev, dtype=dt)
            R[:, 0, 0] = 1
            R[:, 1, 1], R[:, 1, 2], R[:, 2, 1], R[:, 2, 2] = cos, -sin, sin, cos
            M, off = yiq_inv @ R @ yiq, 0
        M = M.expand(n, 3, 3)
        A = M @ A
        t = torch.einsum("nij,nj->ni", M, t) + off
    keep = ~apply.view(-1, 1, 1)
    A = torch.where(keep, eye, A)
    t = torch.where(keep.view(-1, 1), torch.zeros_like(t), t)
    G = torch.where(gray.view(-1, 1, 1), to_gray.expand(n, 3, 3), eye)
    return G @ A, torch.einsum("nij,nj->ni", G, t)


DENSE_SUBSETS: bool | None = None
"""How an operation reaches the views where it applies: ``None`` by device (on a CPU only those views are
computed, found with ``nonzero``; on a GPU every view is computed and ``torch.where`` keeps the right ones,
because ``nonzero`` would make the host wait for the device); ``True``/``False`` force one (tests)."""


def _subset(fn):
    """Apply ``fn`` to the views where ``apply`` holds (per view: either way the same numbers)."""
    def wrapped(x: torch.Tensor, apply: torch.Tensor, *args, **kw) -> torch.Tensor:
        if DENSE_SUBSETS or (DENSE_SUBSETS is None and x.device.type != "cpu"):
            return torch.where(apply.view(-1, 1, 1, 1), fn(x, *args, **kw), x)
        idx = apply.nonzero().flatten()
        if idx.numel() == len(apply):  # every view: no gather and scatter
            return fn(x, *args, **kw)
        if idx.numel():
            x[idx] = fn(x[idx], *[a[idx] if isinstance(a, torch.Tensor) else a for a in args], **kw)
        return x
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_subset
def hed_jitter(x: torch.Tensor, u: torch.Tensor, sigma: float) -> torch.Tensor:
    """Stain-space jitter h' = h * U(1-s, 1+s) + U(-s, s) per stain, as the PIL path; ``u`` (N, 6). Stain
    amounts are linear in optical density, so to the density, out = RGB_FROM_HED^T (diag(alpha) HED^T od +
    beta): one 3 x 3 affine map per view, applied as one batched product."""
    alpha = (1 + sigma * (2 * u[:, :3] - 1)).to(x.dtype)
    beta = (sigma * (2 * u[:, 3:] - 1)).to(x.dtype)
    to_hed, to_rgb = _const(HED_FROM_RGB, x.device, x.dtype), _const(RGB_FROM_HED, x.device, x.dtype)
    A = to_rgb.T @ (alpha.unsqueeze(2) * to_hed.T)  # (N, 3, 3)
    t = beta @ to_rgb  # (N, 3)
    od = torch.log(x.clamp(1e-6, 1.0).flatten(2)).neg_()
    return torch.exp(torch.baddbmm(t.unsqueeze(2), A, od).neg_()).view_as(x).clamp_(0, 1)


@_subset
def solarize(x: torch.Tensor) -> torch.Tensor:
    """PIL's solarize at 128: every value at or above the middle is inverted."""
    return torch.where(x >= 0.5, 1.0 - x, x)


blur_views = _subset(gaussian_blur)
"""Gaussian blur (:mod:`cytofm.ssl.blur`) of the views where ``apply`` holds."""


_POOL: ThreadPoolExecutor | None = None


def _roi_align(x: torch.Tensor, rois: torch.Tensor, out: int, sr: int) -> torch.Tensor:
    """``roi_align`` over all CPU threads: torchvision's CPU kernel runs on one, so on a CPU the boxes are
    split into one chunk per thread (the kernel releases the GIL); on a GPU one call."""
    global _POOL
    n = torch.get_num_threads()
    if x.device.type != "cpu" or n < 2 or len(rois) < 2 * n:
        return roi_align(x, rois, (out, out), 1.0, sr, True)
    if _POOL is None or _POOL._max_workers != n:
        _POOL = ThreadPoolExecutor(max_workers=n)
    parts = list(_POOL.map(lambda r: roi_align(x, r, (out, out), 1.0, sr, True), rois.chunk(n)))
    return torch.cat(parts)


def crop_flip_rotate(src: torch.Tensor, bidx: torch.Tensor, boxes: torch.Tensor, out: int, u: torch.Tensor,
                     rotate90: bool) -> torch.Tensor:
    """Resized crops with flips and 90-degree rotations: with ``aligned=True``, ``roi_align`` walks a box
    with x1 < x0 right to left, so a flip is a swapped box, folded into the sampling; the crop of the
    transposed image at the transposed box is the transpose of the crop (the same samples, axes swapped),
    so a transpose costs one pass over the output instead of a transposed copy of every image. Horizontal
    flips p 0.5; with ``rotate90`` also vertical flips and transposes p 0.5 each, i.e. every element of the
    square's symmetry group equally often, as the PIL path's mirror, flip and k x 90 degrees. One call, no
    data-dependent shapes."""
    # one sampling ratio for the call (roi_align's adaptive one needs positive boxes): enough samples per
    # output pixel to average over the largest crop the batch's images allow, at most 2 x 2 (the cache
    # already holds samples at no more than twice the global crop size); from the shape, known on the host
    sr = min(2, max(1, math.ceil(max(src.shape[-2:]) / out)))
    # coordinates swapped with where/stack (indexing with a Python list copies the list to the device)
    x0, y0, x1, y1 = boxes.unbind(1)
    fh = u[:, 0] < 0.5
    x0, x1 = torch.where(fh, x1, x0), torch.where(fh, x0, x1)
    if rotate90:
        fv = u[:, 1] < 0.5
        y0, y1 = torch.where(fv, y1, y0), torch.where(fv, y0, y1)
    v = _roi_align(src, torch.cat([bidx, torch.stack([x0, y0, x1, y1], 1)], 1), out, sr)
    if rotate90:
        # the plain crop first: where's result takes the first input's layout, kept contiguous
        v = torch.where((u[:, 2] >= 0.5).view(-1, 1, 1, 1), v, v.transpose(2, 3))
    return v


class DeviceMultiCrop:
    """``views(images uint8 (B,3,H,W), sizes (B,2), generator) -> [global_1, global_2, local_1, ...]``."""

    def __init__(self, cfg: CropConfig, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        self.cfg = cfg
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _views(self, src: torch.Tensor, sizes: torch.Tensor, n: int, out: int, scale, blur_p: float,
               solarize_p: float, g: torch.Generator, order: list[int],
               planes: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``n`` views of every sample, view-major: (n*B, 3, out, out). ``planes``: (first row, count) of each
        sample's planes in ``src``; each view is made from one drawn uniformly."""
        c, dev = self.cfg, src.device
        if planes is None:
            pick = torch.arange(sizes.shape[0], device=dev).repeat(n)
        else:
            first, count = (p.repeat(n) for p in planes)
            u = torch.rand(first.shape[0], generator=g, device=dev)
            pick = first + (u * count).long().clamp_(max=count - 1)
        boxes = sample_boxes(sizes[pick], tuple(scale), g)
        bidx = pick.unsqueeze(1).to(boxes.dtype)
        N = boxes.shape[0]
        u = torch.rand(N, 16, generator=g, device=dev)
        v = crop_flip_rotate(src, bidx, boxes, out, u[:, 0:3], c.rotate90)
        hed_u = torch.rand(N, 6, generator=g, device=dev)
        if c.hed_jitter > 0:
            v = hed_jitter(v, u[:, 3] < c.hed_jitter, hed_u, c.hed_sigma)
        A, t = colour_maps(v.mean(dim=(2, 3)), u[:, 4] < c.color_jitter, u[:, 9] < c.grayscale, u[:, 5:9],
                           c.jitter_strength, order)
        v = torch.baddbmm(t.unsqueeze(2), A, v.flatten(2)).view_as(v).clamp_(0, 1)
        if blur_p > 0:
            v = blur_views(v, u[:, 10] < blur_p, 0.1 + 1.9 * u[:, 11])
        if solarize_p > 0:  # known on the host: no view to compute where it is 0
            v = solarize(v, u[:, 12] < solarize_p)
        if dev not in self._norm:  # copied once per device (a blocking copy at every call would be a wait)
            self._norm[dev] = (self.mean.to(dev), self.std.to(dev))
        mean, std = self._norm[dev]
        return v.sub_(mean).div_(std)

    def __call__(self, images: torch.Tensor, sizes: torch.Tensor, g: torch.Generator,
                 counts: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``counts``: the number of planes of each sample, whose images follow each other in ``images``
        (z-stacks with plane views); ``None``: one image per sample."""
        c = self.cfg
        x = images.float()
        x = x / 255.0 if x is images else x.div_(255.0)  # never the caller's tensor in place
        sizes = sizes.to(x.device, non_blocking=True)  # from page-locked memory when the loader pins it
        B = x.shape[0] if counts is None else len(counts)
        planes = None
        if counts is not None:
            count = counts.to(x.device, non_blocking=True)
            planes = (torch.cumsum(count, 0) - count, count)
        # the order of the colour operations (one per call, as torchvision's) drawn on the host from the
        # same seed: drawn on the device it would have to be read back
        rng = random.Random(f"colour-order/{g.initial_seed()}")  # its own stream (the masks use the seed)
        orders = [rng.sample(range(4), 4) for _ in range(3)]
        gs, gsc = c.global_size, c.global_scale
        g1 = self._views(x, sizes, 1, gs, gsc, c.blur[0], 0.0, g, orders[0], planes)
        g2 = self._views(x, sizes, 1, gs, gsc, c.blur[1], c.solarize, g, orders[1], planes)
        views = [g1, g2]
        if c.n_local:
            loc = self._views(x, sizes, c.n_local, c.local_size, c.local_scale, c.blur[2], 0.0, g, orders[2],
                              planes)
            views += list(loc.split(B))
        return views


def decode_workers() -> int:
    """Threads that decode the pool: the cores this process may use, at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


class DeviceBatches(torch.utils.data.Dataset):
    """``dataset[iteration]``: the uint8 images of that iteration's batch and its masks (cheap, in a
    loader process); :meth:`views` then makes the crops on the device. When the training device is the
    CPU and there are loader processes, ``views_in_loader`` makes the views there instead, overlapped with
    the step (the same numbers: a batch depends only on its seed)."""

    def __init__(self, plan, cache: ViewCache, row_of: dict, cfg: PretrainConfig, patch_size: int,
                 views_in_loader: bool = False):
        self.plan, self.cache, self.row_of, self.cfg, self.patch_size = plan, cache, row_of, cfg, patch_size
        self.multicrop = DeviceMultiCrop(cfg.crops)
        self.views_in_loader = views_in_loader

    @classmethod
    def of(cls, b, spill_dir=None, budget: int | None = None, log=print,
           views_in_loader: bool = False) -> DeviceBatches:
        """The device batches of a :class:`~cytofm.ssl.data.PretrainingBatches`: its pool decoded once, one
        cache row per sample, or per plane of a sample with plane views."""
        cfg = b.cfg
        refs, row_of = [], {}
        for t, table in enumerate(b.tables):
            for r in range(len(table)):
                group = table.group(table.refs[r])
                row_of[(t, r)] = (len(refs), len(group))
                refs += [(t, ref) for ref in group]
        local, forks = threading.local(), []

        def image_of(i: int):  # each decoding thread its own open sources
            if not hasattr(local, "b"):
                local.b = b.fork()
                forks.append(local.b)
            return local.b.sample_image(b.tables[refs[i][0]], refs[i][1])

        try:
            cache = build_cache(lambda i: b.sample_size(b.tables[refs[i][0]], refs[i][1]), image_of,
                                len(refs), cfg.data.cache_side or 2 * cfg.crops.global_size,
                                spill_dir=spill_dir, budget=budget, log=log, workers=decode_workers())
        finally:
            for f in forks:
                f.close()
        return cls(b.sample_plan, cache, row_of, cfg, b.patch_size, views_in_loader=views_in_loader)

    def __len__(self) -> int:
        return self.cfg.train.iterations

    def __getitem__(self, iteration: int) -> dict:
        plan = self.plan(iteration)
        rows = [self.row_of[(t, r)] for t, r, _ in plan]  # (first cache row, planes) per sample
        images, sizes = self.cache.batch([i + j for i, n in rows for j in range(n)])
        # a batch with no z-stack sample carries no plane counts: its views drawn exactly as before
        counts = torch.tensor([n for _, n in rows]) if any(n > 1 for _, n in rows) else None
        grid = self.cfg.crops.global_size // self.patch_size
        masks = []
        for _, _, seed in plan:
            rng = random.Random(seed)
            masks.append(np.stack([make_mask(self.cfg.mask, grid, grid, rng) for _ in range(2)]))
        m = torch.from_numpy(np.stack(masks, axis=1))
        raw = {"images": images, "sizes": sizes, "masks": m, "mask_index": masked_positions(m),
               "iteration": iteration, "seed": int(plan[0][2]), "counts": counts}
        if self.views_in_loader:
            if torch.utils.data.get_worker_info() is not None:
                torch.set_num_threads(1)  # a loader process: one core, the step keeps the rest
            return self.views(raw, torch.device("cpu"))
        return raw

    def views(self, raw: dict, device: torch.device) -> dict:
        g = torch.Generator(device=device)
        g.manual_seed(raw["seed"] % (2**63 - 1))
        images = raw["images"].to(device, non_blocking=True)
        crops = self.multicrop(images, raw["sizes"], g, raw.get("counts"))
        return {"crops": crops, "masks": raw["masks"], "mask_index": raw.get("mask_index"),
                "iteration": raw["iteration"]}
