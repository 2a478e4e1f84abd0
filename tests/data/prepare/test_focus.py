"""The focus score against its definition (a blurred step edge, hand-computed), its invariance to the
amount of stain, blank patches, the calibration on real fields blurred by known widths, and prepare's
scores and filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cytofm.data.prepare.focus import box_focus, focus_maps, focus_score

BG = np.array([220.0, 220.0, 220.0])
DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def _from_od(od: np.ndarray) -> np.ndarray:
    return ((BG + 1) * 10 ** (-od[..., None]) - 1).round().clip(0, 255).astype(np.uint8)


def _edge(blur: float, stain: float = 1.0, n: int = 128) -> np.ndarray:
    od = np.zeros((n, n), np.float32)
    od[:, n // 2:] = 0.3 * stain
    return _from_od(ndimage.gaussian_filter(od, blur, mode="nearest") if blur else od)


@pytest.mark.parametrize("blur", [2.0, 3.0, 4.0])
def test_a_blurred_step_edge_scores_as_the_definition_says(blur):
    """E(s) of a step edge blurred by b is proportional to 1/sqrt(s^2 + b^2), so with scales 0.6 and 4 px
    the score is (sqrt((16 + b^2) / (0.36 + b^2)) - 1) / (4 / 0.6 - 1): 0.2015 at b = 2, 0.1119 at b = 3,
    0.0703 at b = 4."""
    want = {2.0: 0.2015, 3.0: 0.1119, 4.0: 0.0703}[blur]
    assert want == pytest.approx((np.sqrt((16 + blur**2) / (0.36 + blur**2)) - 1) / (4 / 0.6 - 1), abs=1e-4)
    assert focus_score(_edge(blur), BG)[0] == pytest.approx(want, abs=0.01)


def test_a_sharp_edge_scores_near_one_and_the_score_falls_with_blur():
    scores = [focus_score(_edge(b), BG)[0] for b in (0, 0.5, 1, 1.5, 2, 3, 4, 6)]
    assert scores[0] > 0.7 and all(a > b for a, b in zip(scores, scores[1:], strict=False))


def test_the_amount_of_stain_does_not_change_the_score():
    for blur in (0, 2):
        light, dark = focus_score(_edge(blur, 0.5), BG)[0], focus_score(_edge(blur, 2.5), BG)[0]
        assert light == pytest.approx(dark, abs=0.01)


def test_a_blank_patch_scores_zero_and_is_marked_not_nan():
    glass = np.clip(np.random.default_rng(0).normal(220, 2, (96, 96, 3)), 0, 255).astype(np.uint8)
    assert focus_score(glass, BG) == (0.0, True)
    maps = focus_maps(glass, BG)
    score, blank = box_focus(maps, np.array([[0, 0, 0, 0], [10, 10, 50, 50]]))  # an empty box too
    assert np.isfinite(score).all() and blank.all() and (score == 0).all()


def test_boxes_score_as_their_own_crops():
    """One pass over the image gives each box the score of its crop scored alone (away from the borders,
    where the filters see the same pixels)."""
    from tests.helpers import smear

    rgb = _blur(smear(200, 260, [(60, 60, 25), (190, 130, 30), (120, 150, 18)], seed=3)[0], 1)
    boxes = [(20, 20, 120, 120), (130, 70, 250, 190)]
    s, _ = box_focus(focus_maps(rgb, BG), np.array(boxes))
    for (x0, y0, x1, y1), v in zip(boxes, s, strict=True):
        assert v == pytest.approx(focus_score(rgb[y0:y1, x0:x1], BG)[0], rel=0.1)


def _restain(rgb: np.ndarray, bg: np.ndarray, k: float) -> np.ndarray:
    od = -np.log10((rgb.astype(np.float32) + 1) / (bg + 1))
    return ((bg + 1) * 10 ** (-k * od) - 1).round().clip(0, 255).astype(np.uint8)


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    if not sigma:
        return rgb
    return np.stack([ndimage.gaussian_filter(rgb[..., c].astype(np.float32), sigma) for c in range(3)],
                    -1).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("dataset", ["chula_rbc12", "bccd"])
def test_real_fields_blurred_by_known_widths(dataset):
    """Evaluation-part fields, 224 px patches blurred by 0-4 px: the score falls with the blur in every
    patch (Spearman <= -0.95), and sharp patches are told from patches blurred by 2 px with AUROC >= 0.95,
    also when the blurred ones carry 1.6x the stain of the sharp ones, or 0.6x."""
    from PIL import Image
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from cytofm.data.prepare.foreground import background_intensity
    from cytofm.data.provenance.split_files import part_of

    root = DATA / dataset
    if not root.is_dir():
        pytest.skip(f"shared data not found: {root}")
    sigmas = [0, 0.5, 1, 2, 3, 4]
    rhos, auc = [], {}
    pairs = {k: ([], []) for k in (1.0, 1.6, 0.6)}
    for rel in part_of(dataset, "eval")[:8]:
        rgb = np.asarray(Image.open(root / rel).convert("RGB"))
        bg = background_intensity(rgb)
        h, w = rgb.shape[:2]
        boxes = np.array([[x, y, x + 224, y + 224] for y in range(0, h - 223, 224)
                          for x in range(0, w - 223, 224)])
        per = np.array([box_focus(focus_maps(_blur(rgb, s), bg), boxes)[0] for s in sigmas])
        rhos += [spearmanr(sigmas, per[:, b]).statistic for b in range(len(boxes))]
        for k, (sharp, blurred) in pairs.items():
            sharp += per[0].tolist() if k == 1.0 else box_focus(focus_maps(rgb, bg), boxes)[0].tolist()
            blurred += (per[sigmas.index(2)] if k == 1.0 else
                        box_focus(focus_maps(_restain(_blur(rgb, 2), bg, k), bg), boxes)[0]).tolist()
    for k, (sharp, blurred) in pairs.items():
        auc[k] = roc_auc_score(np.r_[np.ones(len(sharp)), np.zeros(len(blurred))], np.r_[sharp, blurred])
    assert max(rhos) <= -0.95
    assert min(auc.values()) >= 0.95, auc


def test_prepare_scores_every_patch_and_drops_the_blurred_ones_on_request(tmp_path):
    import h5py
    from PIL import Image

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.utils.io import read_csv

    from tests.helpers import smear

    cells = [(x, y, 18) for x in range(30, 480, 60) for y in range(30, 230, 60)]
    rgb = smear(240, 480, cells, seed=2)[0]
    rgb[:, 240:] = _blur(rgb[:, 240:], 3)  # the right half out of focus
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "field.png")
    for name, extra in (("all", {}), ("sharp", {"min_focus": 0.4})):
        cfg = build_config(PrepareConfig, values={"tiling": {"patch_size": 120},
                                                  "foreground": extra, "output": {"workers": 1}})
        run_prepare([str(tmp_path / "in")], tmp_path / name, cfg, log=lambda m: None)
        with h5py.File(tmp_path / name / "coords" / "field.h5") as f:
            coords, focus, blank = f["coords"][:], f["focus"][:], f["focus_blank"][:]
        if name == "all":
            assert len(coords) == 8 and not blank.any()
            left, right = focus[coords[:, 0] < 240], focus[coords[:, 0] >= 240]
            assert left.min() > 2 * right.max()
            row = read_csv(tmp_path / name / "manifest.csv")[0]
            assert float(row["focus_median"]) == pytest.approx(float(np.median(focus)), abs=1e-4)
        else:
            assert sorted(coords[:, 0].tolist()) == [0, 0, 120, 120]


def test_every_detected_cell_gets_a_focus_and_the_blurred_ones_score_lower():
    from cytofm.data.cells.detect import detect_source
    from cytofm.data.prepare.config import CellsConfig
    from cytofm.data.sources.source import ImageSource

    from tests.helpers import smear

    cells = [(x, y, 16) for x in range(40, 480, 80) for y in range(40, 240, 80)]
    rgb = smear(240, 480, cells, seed=4)[0]
    rgb[:, 240:] = _blur(rgb[:, 240:], 3)
    found = detect_source(ImageSource("f.png", 0.25, rgb), 0.25,
                          CellsConfig(typical_diameter_um=8, min_diameter_um=3, max_diameter_um=20))
    assert len(found) == len(cells)
    f, left = found.measures["focus"], found.centre[:, 0] < 240
    assert np.isfinite(f).all() and f[left].min() > 2 * f[~left].max()
