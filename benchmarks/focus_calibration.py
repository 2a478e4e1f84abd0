"""The focus score calibrated on real fields blurred by known Gaussian widths (evaluation parts of the
shipped split), beside the usual score (variance of the Laplacian of the grey image) in the same run, and
what scoring costs ``prepare``.

Usage: python benchmarks/focus_calibration.py [--limit N] [--slide-side 40000] [--data ../shared/data]

- Per 224 px patch, blurs of 0, 0.5, 1, 1.5, 2, 3, 4 px: Spearman's rho of score against blur (target
  <= -0.95 in every patch), and the AUROC telling sharp patches from patches blurred by 1, 2 and 3 px
  (target >= 0.95 from 2 px), also when the blurred patches carry 1.6x the stain of the sharp ones (their
  optical density scaled: darker) or 0.6x (paler), and with the sensor noise put back after the blur (a
  real defocus blurs the optics, not the camera's noise).
- ``prepare`` of the same fields with and without focus scoring (default settings, one process): MP/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shared_data import add_data_option, data_folder

SIGMAS = (0, 0.5, 1, 1.5, 2, 3, 4)
STAINS = (1.0, 1.6, 0.6)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    if not sigma:
        return rgb
    return np.stack([ndimage.gaussian_filter(rgb[..., c].astype(np.float32), sigma) for c in range(3)],
                    -1).round().clip(0, 255).astype(np.uint8)


def restain(rgb: np.ndarray, bg: np.ndarray, k: float) -> np.ndarray:
    od = -np.log10((rgb.astype(np.float32) + 1) / (bg + 1))
    return ((bg + 1) * 10 ** (-k * od) - 1).round().clip(0, 255).astype(np.uint8)


def with_noise(blurred: np.ndarray, sharp: np.ndarray, seed: int = 0) -> np.ndarray:
    """A blurred field with the sensor noise put back: a real defocus blurs the optics, not the camera's
    noise, which a blur of the recorded image removes. The noise's size is the sharp field's on its glass
    (the brightest tenth of pixels, against a 1 px smoothing of itself)."""
    from scipy import ndimage

    x = sharp.astype(np.float32)
    lum = x.mean(2)
    glass = lum >= np.percentile(lum, 90)
    resid = x - np.stack([ndimage.gaussian_filter(x[..., c], 1.0) for c in range(3)], -1)
    # white noise minus its 1 px smoothing keeps 1 - 2 g(0) + sum g^2 = 1 - 1/(2 pi) + 1/(4 pi) of its
    # variance
    sd = float(resid[glass].std()) / np.sqrt(1 - 1 / (2 * np.pi) + 1 / (4 * np.pi))
    rng = np.random.default_rng(seed)
    noisy = blurred.astype(np.float32) + rng.normal(0, sd, blurred.shape)
    return noisy.round().clip(0, 255).astype(np.uint8)


def laplacian_variance(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The usual focus score: variance of the Laplacian of the grey image, per box."""
    from scipy import ndimage

    lap = ndimage.laplace(rgb.astype(np.float32).mean(2))
    return np.array([lap[y0:y1, x0:x1].var() for x0, y0, x1, y1 in boxes])


def score_set(root: Path, files: list[str]) -> dict:
    from PIL import Image
    from scipy.stats import spearmanr

    from cytofm.data.prepare.focus import box_focus, focus_maps
    from cytofm.data.prepare.foreground import background_intensity

    out = {name: {"rho": [], "sharp": {k: [] for k in STAINS}, "blurred": {}}
           for name in ("cytofm", "laplacian")}
    for rel in files:
        rgb = np.asarray(Image.open(root / rel).convert("RGB"))
        bg = background_intensity(rgb)
        h, w = rgb.shape[:2]
        boxes = np.array([[x, y, x + 224, y + 224] for y in range(0, h - 223, 224)
                          for x in range(0, w - 223, 224)])
        scorers = {"cytofm": lambda im, b=boxes, g=bg: box_focus(focus_maps(im, g), b)[0],
                   "laplacian": lambda im, b=boxes: laplacian_variance(im, b)}
        for name, f in scorers.items():
            per = np.array([f(blur(rgb, s)) for s in SIGMAS])
            out[name]["rho"] += [spearmanr(SIGMAS, per[:, b]).statistic for b in range(len(boxes))]
            for k in STAINS:
                out[name]["sharp"][k] += per[0].tolist()
                for s in (1, 2, 3):
                    im = blur(rgb, s) if k == 1.0 else restain(blur(rgb, s), bg, k)
                    out[name]["blurred"].setdefault((k, s), []).extend(f(im).tolist())
            for s in (1, 2, 3):
                out[name]["blurred"].setdefault(("noise", s), []).extend(
                    f(with_noise(blur(rgb, s), rgb)).tolist())
    return out


def auroc(sharp: list, blurred: list) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(sharp)), np.zeros(len(blurred))], np.r_[sharp, blurred]))


def prepare_rate(root: Path, files: list[str], focus: bool) -> float:
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    cfg = PrepareConfig.model_validate({"foreground": {"focus": "images" if focus else "none"},
                                        "output": {"workers": 1, "qa_thumbnails": 0}})
    paths = [str(root / f) for f in files]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_prepare(paths, Path(out), cfg, log=lambda m: None)
        el = time.perf_counter() - t0
    from PIL import Image

    return sum(np.prod(Image.open(p).size) for p in paths) / 1e6 / el


def slide_rates(side: int) -> None:
    """``prepare`` of a synthetic ``side`` x ``side`` slide (the predict benchmark's) without and with focus
    scoring: on a slide every kept patch is read once more for its score."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from predict_throughput import slide

    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slide.tif"
        slide(path, side, mpp=0.25)
        rates = {}
        for focus in (False, True):
            cfg = PrepareConfig.model_validate({"foreground": {"focus": "all" if focus else "none"},
                                                "output": {"workers": 1, "qa_thumbnails": 0}})
            t0 = time.perf_counter()
            res = run_prepare([str(path)], Path(tmp) / f"out{focus}", cfg, log=lambda m: None)
            rates[focus] = side * side / 1e6 / (time.perf_counter() - t0)
        n = res.rows[0]["n_patches"]
        print(f"slide {side} x {side} ({n} patches kept): prepare {rates[False]:.1f} MP/s without focus, "
              f"{rates[True]:.1f} with ({rates[True] / rates[False]:.3f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=40, help="fields per data set")
    ap.add_argument("--slide-side", type=int, default=0, help="also a synthetic slide of this side (px)")
    add_data_option(ap)
    a = ap.parse_args()
    data = data_folder(a.data, doing="score")
    if data is None:
        return 0
    from cytofm.data.provenance.split_files import part_of

    print("evaluation parts; AUROC of sharp patches against patches blurred by s px "
          "(x1.6 / x0.6: the blurred ones with that much more or less stain)")
    for ds in ("chula_rbc12", "bccd"):
        files = part_of(ds, "eval")[: a.limit]
        res = score_set(data / ds, files)
        for name, r in res.items():
            rho = np.array(r["rho"])
            cells = "  ".join(f"s={s} {'x' + str(k) if k != 1.0 else '':>4} "
                              f"{auroc(r['sharp'][k], r['blurred'][(k, s)]):.3f}"
                              for k in STAINS for s in ((1, 2, 3) if k == 1.0 else (2,)))
            cells += "  noise put back: " + "  ".join(
                f"s={s} {auroc(r['sharp'][1.0], r['blurred'][('noise', s)]):.3f}" for s in (1, 2, 3))
            q = {k: np.percentile(v, [5, 50, 95]).round(3).tolist()
                 for k, v in (("sharp", r["sharp"][1.0]), ("2 px", r["blurred"][(1.0, 2)]))}
            print(f"{ds:<12} {name:<10} score 5/50/95th percentiles: sharp {q['sharp']}, "
                  f"blurred 2 px {q['2 px']}")
            print(f"{ds:<12} {name:<10} {len(rho)} patches on {len(files)} fields: Spearman max "
                  f"{rho.max():+.3f} median {np.median(rho):+.3f}, share <= -0.95 "
                  f"{np.mean(rho <= -0.95):.3f}; AUROC {cells}")
        off, on = prepare_rate(data / ds, files, False), prepare_rate(data / ds, files, True)
        print(f"{ds:<12} prepare {off:.2f} MP/s without focus, {on:.2f} with ({on / off:.2f}x)")
    if a.slide_side:
        slide_rates(a.slide_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
