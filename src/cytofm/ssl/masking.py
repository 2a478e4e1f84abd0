"""Masks for masked image modelling on the token grid (iBOT, after BEiT's block-wise masking).

Each global crop draws a prediction ratio from a list of (mean, half-width) pairs; block masking then
adds rectangles of at least ``min_block`` tokens with log-uniform aspect ratio until that share of the
grid is masked.

References:
    Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.
    Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022 (block-wise masking).
"""

from __future__ import annotations

import math
import random

import numpy as np

from cytofm.ssl.config import MaskConfig


def draw_ratio(cfg: MaskConfig, rng: random.Random) -> float:
    """One prediction ratio: a mean chosen uniformly from ``cfg.ratio``, then U(mean - var, mean + var)."""
    i = rng.randrange(len(cfg.ratio))
    mean, var = cfg.ratio[i], cfg.ratio_var[i]
    return rng.uniform(mean - var, mean + var) if var > 0 else mean


def block_mask(h: int, w: int, ratio: float, rng: random.Random, aspect=(0.3, 1 / 0.3),
               min_block: int | None = None) -> np.ndarray:
    """Boolean (h, w) mask with about ``ratio * h * w`` tokens in rectangular blocks."""
    mask = np.zeros((h, w), dtype=bool)
    target = int(round(ratio * h * w))
    if target <= 0:
        return mask
    low = (min(h, w) // 3) ** 2 if min_block is None else min_block
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    count = 0
    while count < target:
        budget = target - count
        added = 0
        for _ in range(10):  # a few tries to place one block within the remaining budget
            area = rng.uniform(low, max(budget, low))
            ar = math.exp(rng.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * ar)))
            bw = int(round(math.sqrt(area / ar)))
            if bh * bw < low or bh >= h or bw >= w:  # rounding must not shrink a block below the minimum
                continue
            top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
            new = bh * bw - int(mask[top:top + bh, left:left + bw].sum())
            if 0 < new <= budget:
                mask[top:top + bh, left:left + bw] = True
                added = new
                break
        if added == 0:
            break
        count += added
    return mask


def random_mask(h: int, w: int, ratio: float, rng: random.Random) -> np.ndarray:
    n = h * w
    k = int(round(ratio * n))
    mask = np.zeros(n, dtype=bool)
    mask[rng.sample(range(n), k)] = True
    return mask.reshape(h, w)


def make_mask(cfg: MaskConfig, h: int, w: int, rng: random.Random) -> np.ndarray:
    ratio = max(0.0, draw_ratio(cfg, rng))
    if cfg.shape == "random":
        return random_mask(h, w, ratio, rng)
    return block_mask(h, w, ratio, rng, cfg.aspect, cfg.min_block)
