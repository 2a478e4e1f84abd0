import math
import random

import numpy as np
import pytest

from cytofm.ssl.config import MaskConfig
from cytofm.ssl.masking import block_mask, draw_ratio, make_mask
from cytofm.ssl.schedules import cosine_value, linear_warmup_constant


def test_cosine_hand_values():
    # warm-up 0 -> 1 over 5 iterations (linspace), then cosine 1 -> 0 over the remaining 10
    assert [cosine_value(i, 15, 1.0, 0.0, 5) for i in range(5)] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert cosine_value(5, 15, 1.0, 0.0, 5) == pytest.approx(1.0)
    assert cosine_value(10, 15, 1.0, 0.0, 5) == pytest.approx(0.5)  # half-way: cos(pi/2) = 0
    assert (cosine_value(5 + 10 * 2 // 3, 15, 1.0, 0.0, 5)
            == pytest.approx(0.5 * (1 + math.cos(math.pi * 6 / 10))))
    assert cosine_value(99, 15, 1.0, 0.0, 5) == 0.0


def test_teacher_momentum_and_weight_decay_schedules():
    assert cosine_value(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_value(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert cosine_value(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_value(50, 100, 0.04, 0.4) == pytest.approx(0.22)


def test_teacher_temperature_warmup():
    assert linear_warmup_constant(0, 0.04, 0.07, 31) == pytest.approx(0.04)
    assert linear_warmup_constant(15, 0.04, 0.07, 31) == pytest.approx(0.055)
    assert linear_warmup_constant(30, 0.04, 0.07, 31) == pytest.approx(0.07)
    assert linear_warmup_constant(1000, 0.04, 0.07, 31) == pytest.approx(0.07)


def test_ratio_distribution_half_unmasked_half_uniform():
    cfg = MaskConfig()
    rng = random.Random(0)
    r = np.array([draw_ratio(cfg, rng) for _ in range(20000)])
    assert abs((r == 0).mean() - 0.5) < 0.02
    nz = r[r > 0]
    assert nz.min() >= 0.1 and nz.max() <= 0.5
    assert abs(nz.mean() - 0.3) < 0.01 and abs(nz.std() - 0.4 / math.sqrt(12)) < 0.01


def test_block_mask_stays_within_the_float_target():
    rng = random.Random(1)
    for ratio in (0.1, 0.3, 0.5):
        for _ in range(200):
            assert block_mask(14, 14, ratio, rng).sum() <= ratio * 196 + 1e-9


def test_random_mask_exact_count_and_zero_ratio():
    cfg = MaskConfig(shape="random", ratio=[0.25], ratio_var=[0.0])
    assert make_mask(cfg, 8, 8, random.Random(0)).sum() == 16
    cfg = MaskConfig(shape="random", ratio=[0.3], ratio_var=[0.0])
    assert make_mask(cfg, 8, 8, random.Random(0)).sum() == 19  # int(19.2), floored as the reference
    assert not block_mask(14, 14, 0.0, random.Random(0)).any()
