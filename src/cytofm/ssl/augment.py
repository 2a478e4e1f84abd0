"""Multi-crop views for self-distillation, with cytology-appropriate geometry and colour.

Two global crops and N local crops (DINO/iBOT). Cytology has no canonical orientation, so views are
also flipped vertically and rotated by multiples of 90 degrees. Colour: RGB jitter as in DINO, or
jitter in haematoxylin-eosin-DAB stain space (Tellez et al., 2018), which changes stain amounts the way
preparations and scanners do. All randomness comes from Python's ``random`` and torch's RNG, which the
loader seeds per sample, so a batch is a pure function of (seed, iteration).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import v2

from cytofm.ssl.config import CropConfig

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB) in optical density space.
HED_FROM_RGB = np.linalg.inv(np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]))
RGB_FROM_HED = np.linalg.inv(HED_FROM_RGB)


def hed_jitter(img: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    """Scale and shift each stain concentration: h' = h * U(1-s, 1+s) + U(-s, s)."""
    rgb = np.asarray(img, dtype=np.float32) / 255.0
    od = -np.log(np.clip(rgb, 1e-6, 1.0))
    hed = od.reshape(-1, 3) @ HED_FROM_RGB
    alpha = np.array([rng.uniform(1 - sigma, 1 + sigma) for _ in range(3)], np.float32)
    beta = np.array([rng.uniform(-sigma, sigma) for _ in range(3)], np.float32)
    hed = hed * alpha + beta
    out = np.exp(-(hed @ RGB_FROM_HED)).reshape(rgb.shape)
    return Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))


class MultiCrop:
    """``__call__(PIL image or its planes) -> [global_1, global_2, local_1, ..., local_N]`` normalised
    tensors."""

    def __init__(self, cfg: CropConfig, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        self.cfg = cfg
        s = cfg.jitter_strength
        self.global_crop = v2.RandomResizedCrop(cfg.global_size, scale=tuple(cfg.global_scale),
                                                interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        self.local_crop = v2.RandomResizedCrop(cfg.local_size, scale=tuple(cfg.local_scale),
                                               interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        self.jitter = v2.ColorJitter(0.4 * s, 0.4 * s, 0.2 * s, min(0.1 * s, 0.5))
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(mean, std)])

    def _geometry(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        if self.cfg.rotate90:
            if rng.random() < 0.5:
                img = ImageOps.flip(img)
            k = rng.randrange(4)
            if k:
                img = img.rotate(90 * k, expand=True)
        return img

    def _colour(self, img: Image.Image, blur_p: float, solarize_p: float, rng: random.Random) -> Image.Image:
        c = self.cfg
        if c.hed_jitter > 0 and rng.random() < c.hed_jitter:
            img = hed_jitter(img, c.hed_sigma, rng)
        if rng.random() < c.color_jitter:
            img = self.jitter(img)
        if rng.random() < c.grayscale:
            img = ImageOps.grayscale(img).convert("RGB")
        if rng.random() < blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        if rng.random() < solarize_p:
            img = ImageOps.solarize(img, 128)
        return img

    def __call__(self, img: Image.Image | list[Image.Image], rng: random.Random) -> list[torch.Tensor]:
        """Views of one image, or of a region's focal planes (equal sizes): each view then made from a
        plane drawn uniformly, so the views of a sample disagree in focus as they do in colour."""
        c = self.cfg
        planes = img if isinstance(img, list) else [img]

        def plane() -> Image.Image:  # no draw for one plane: single-plane batches as before
            return planes[rng.randrange(len(planes))] if len(planes) > 1 else planes[0]

        views = []
        for i in range(2):
            v = self._geometry(self.global_crop(plane()), rng)
            v = self._colour(v, c.blur[i], c.solarize if i == 1 else 0.0, rng)
            views.append(self.to_tensor(v))
        for _ in range(c.n_local):
            v = self._geometry(self.local_crop(plane()), rng)
            views.append(self.to_tensor(self._colour(v, c.blur[2], 0.0, rng)))
        return views
