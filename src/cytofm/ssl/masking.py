"""Masks for masked image modelling on the token grid (iBOT, after BEiT's block-wise masking).

Each global crop draws a prediction ratio from a list of (mean, half-width) pairs; block masking then
adds rectangles with log-uniform aspect ratio until that share of the grid is masked, exactly as the
iBOT reference's data loader does (tests/ssl/test_ibot_parity.py checks it against a re-implementation).

References:
    Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.
    Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022 (block-wise masking).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from cytofm.ssl.config import MaskConfig


def draw_ratio(cfg: MaskConfig, rng: random.Random) -> float:
    """One prediction ratio: U(mean - var, mean + var) for every pair (the reference draws them all), then
    one of them chosen uniformly."""
    ratios = [rng.uniform(m - v, m + v) if v > 0 else m
              for m, v in zip(cfg.ratio, cfg.ratio_var, strict=True)]
    return rng.choice(ratios)


def block_mask(h: int, w: int, ratio: float, rng: random.Random, aspect=(0.3, 1 / 0.3),
               min_block: int | None = None) -> np.ndarray:
    """Boolean (h, w) mask drawn the way the iBOT reference draws block masks (after BEiT).

    Until ``ratio * h * w`` tokens (not rounded) are masked: up to 10 tries to place a rectangle whose
    area is drawn between ``min_block`` and the remaining budget (``random.uniform`` also when the budget
    is below ``min_block``) with a log-uniform aspect ratio, accepted when it fits strictly inside the
    grid and adds between 1 and the remaining budget of new tokens; no placement in 10 tries ends it.
    The same sequence of ``random`` calls as the reference, so the same seed gives the same mask.
    """
    mask = np.zeros((h, w), dtype=bool)
    target = ratio * h * w
    low = (min(h, w) // 3) ** 2 if min_block is None else min_block
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    count = 0
    while count < target:
        budget = target - count
        added = 0
        for _ in range(10):
            area = rng.uniform(low, budget)
            ar = math.exp(rng.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * ar)))
            bw = int(round(math.sqrt(area / ar)))
            if bw < w and bh < h:
                top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
                new = bh * bw - int(mask[top:top + bh, left:left + bw].sum())
                if 0 < new <= budget:
                    mask[top:top + bh, left:left + bw] = True
                    added += new
            if added > 0:
                break
        if added == 0:
            break
        count += added
    return mask


def random_mask(h: int, w: int, ratio: float, rng: random.Random) -> np.ndarray:
    """``int(ratio * h * w)`` tokens (floored, as the reference) at random positions."""
    n = h * w
    k = int(ratio * n)
    mask = np.zeros(n, dtype=bool)
    mask[rng.sample(range(n), k)] = True
    return mask.reshape(h, w)


def make_mask(cfg: MaskConfig, h: int, w: int, rng: random.Random) -> np.ndarray:
    ratio = max(0.0, draw_ratio(cfg, rng))
    if cfg.shape == "random":
        return random_mask(h, w, ratio, rng)
    return block_mask(h, w, ratio, rng, cfg.aspect, cfg.min_block)


def masked_positions(masks: torch.Tensor) -> torch.Tensor:
    """(M, 2) (image, token) of every masked token of view-major masks (G, B, h, w) or (G*B, h, w), in
    row-major order. The loaders make it on the host with the masks: the same ``nonzero`` on a GPU would
    make the host wait for the device once per step."""
    return masks.reshape(-1, masks.shape[-2] * masks.shape[-1]).nonzero()
