"""Cell detection scored on real annotations (evaluation parts of the shipped split), the default detector
(``watershed``) beside the plain baseline (``otsu``: Otsu's threshold and connected components) in the
same run, with the detection rate against ``prepare``'s tiling rate.

Usage: python benchmarks/cell_detection.py [--limit N] [--part eval|pretrain] [--data ../shared/data]
                                          [--slide-side 40000] [--perturb] [--out FILE.md]

- BCCD white cells (Giemsa-like fields, VOC boxes of class WBC): recall with the detection's centre inside
  the box, and recall at IoU >= 0.5 between the detection's box and the annotated one; the rate is
  detection's alone (megapixels/s).
- BCCD white-cell outlines (fields with a nucleus mask, ``bccd/nucleus_masks``, 255 = white-cell nucleus),
  scored on the outlines ``prepare --cells`` writes, filled back into pixels (``cytofm.eval.segmentation``):
  nucleus Dice per field (every detected nucleus outline filled, their union against the mask), averaged
  over fields; per annotated white cell: split (two or more detected cells that touch the annotated nucleus
  each cover >= 20% of the white cell's box), merged (the detected cell holding most of the annotated
  nucleus reaches outside the box by more than 30% of the box's area), and recall at IoU >= 0.5 of that
  cell's box against the annotated one.
- chula_rbc12 red cells (labelled centre points, only some cells of a field labelled): a detection matches
  a labelled point within half the median cell radius (one to one, nearest first); precision, recall, F1
  (precision counts unlabelled real cells as false detections, so recall is the number to read).
- Herlev Pap single-cell crops: one cell found, its centre within a quarter of the crop side of the centre;
  outlines against the crop's mask (manifest column ``mask``: 2 nucleus, 3 cytoplasm, 0/1/4 background):
  the detected cell whose filled outline overlaps the mask's cell most, its whole-cell Dice against
  mask in {2, 3} and its nucleus outline's Dice against mask == 2 (0 for both where no cell overlaps).

``--perturb``: BCCD nucleus Dice, split, merged and IoU recall, Herlev Dice and chula recall again with
each image perturbed before detection (``cell_scoring.PERTURBATIONS``): stain amount x0.6 and x1.6 in
optical density against the glass, hue turned +-15 degrees, a yellow cast (blue x0.8), Gaussian blur of
1 px, JPEG at quality 60, and the um/px told to the detector 25% low and 25% high (image unchanged); chula
matched within the unperturbed run's distance. Time on a 2-core CPU, full eval part, both detectors: about
1.5 min; with ``--perturb`` (every set detected ten times) 15 to 20 min (estimated from a ``--limit 20``
run). A markdown table (one row per perturbation, per detector, with the targets missed)
ends the output; ``--out FILE.md`` writes it too. ``--limit`` applies to every set.

Resolutions: BCCD 0.074 um/px (its median red-cell box, 102 px, taken as a 7.5 um red cell); chula 0.19
um/px (the 20 um scale bar some of its fields carry is 105 px long, e.g. images/169.jpg);
Herlev crops (40 px, scale not recorded) taken as 60 um wide (a squamous cell and its surround).
``--slide-side N``: also a synthetic N x N pyramidal TIFF at 0.25 um/px (the predict benchmark's slide: JPEG
tiles of stained disks, written by libvips), prepared with and without ``--cells`` in this process, with the
peak resident memory of each and the detection rate (the memory bound is the one ``prepare`` keeps).
Targets (issue on cells): BCCD white-cell recall >= 0.98; chula red-cell recall >= 0.95, F1 >= 0.85 and
>= the baseline's + 0.10. Outlines (issue on cell outlines): BCCD nucleus Dice >= 0.90, split <= 1%, merged
<= 3%, IoU >= 0.5 recall >= 0.95, chula recall >= 0.95; under each perturbation, nucleus Dice within 0.05
and split within 2 points of unperturbed.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cell_scoring import PERTURBATIONS, WhiteCellScores, detect_perturbed, herlev_dice, row, table  # noqa: E402

from cytofm.data.provenance.split_files import SMEAR_MPP as MPP  # noqa: E402

HERLEV_WIDTH_UM = 60.0
PART = "eval"


def _voc_wbc(path: Path) -> list[np.ndarray]:
    text = path.read_text()
    out = []
    for name, box in re.findall(r"<name>(\w+)</name>.*?<bndbox>(.*?)</bndbox>", text, re.S):
        if name == "WBC":
            v = [float(re.search(f"<{k}>([-0-9.]+)</{k}>", box).group(1))
                 for k in ("xmin", "ymin", "xmax", "ymax")]
            out.append(np.array(v))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _detect(path: Path, mpp: float, cfg, detector: str, perturb=None):
    from cytofm.data.cells.detect import detect_source
    from cytofm.data.sources.source import open_source

    cfg = cfg.model_copy(update={"detector": detector})
    if perturb is not None:
        return detect_perturbed(path, mpp, cfg, perturb)
    src = open_source(path, "image", mpp)
    try:
        return detect_source(src, mpp, cfg), src.width * src.height
    finally:
        src.close()


def bccd(root: Path, limit: int, cfg, detector: str, perturb=None) -> dict:
    """White cells by their boxes, and their outlines where the field has a nucleus mask; the rate is
    detection's alone (scoring not timed)."""
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of

    n = inside = iou = 0
    pixels, el, outlines = 0, 0.0, WhiteCellScores()
    for rel in part_of("bccd", PART)[:limit]:
        boxes = _voc_wbc(root / "annotations" / (Path(rel).stem + ".xml"))
        if not boxes:
            continue
        t0 = time.perf_counter()
        cells, px = _detect(root / rel, MPP["bccd"], cfg, detector, perturb)
        el += time.perf_counter() - t0
        pixels += px
        mask = root / "nucleus_masks" / (Path(rel).stem + ".png")
        if mask.is_file():
            outlines.add(cells, np.asarray(Image.open(mask).convert("L")) > 127, boxes, _iou)
        for b in boxes:
            n += 1
            c = cells.centre
            hit = (c[:, 0] >= b[0]) & (c[:, 0] <= b[2]) & (c[:, 1] >= b[1]) & (c[:, 1] <= b[3])
            inside += bool(hit.any())
            iou += bool(any(_iou(cells.bbox[k], b) >= 0.5 for k in np.flatnonzero(hit)))
    return {"n": n, "recall_centre": inside / max(n, 1), "recall_iou50": iou / max(n, 1),
            "mpix_s": pixels / 1e6 / max(el, 1e-9), **outlines.result()}


def matches(found: np.ndarray, labelled: np.ndarray, tol: float) -> int:
    """The most one-to-one pairs (detection, labelled point) within ``tol`` px. Distances beyond it all
    cost the same: with raw distances a minimum-cost assignment gives up a close pair to shorten far ones."""
    from scipy.optimize import linear_sum_assignment

    if not len(found) or not len(labelled):
        return 0
    d = np.hypot(*(found[:, None, :] - labelled[None]).transpose(2, 0, 1))
    cost = np.where(d <= tol, d / max(tol, 1e-9), 2.0)
    r, c = linear_sum_assignment(cost)
    return int((d[r, c] <= tol).sum())


def chula(root: Path, limit: int, cfg, detector: str, perturb=None, tol: float | None = None) -> dict:
    """``tol``: the match distance (px) of an unperturbed run, so that a perturbed one is held to it."""
    from cytofm.data.provenance.split_files import part_of

    points: dict[str, list] = {}
    with open(root / "cells.csv", newline="") as f:
        for r in csv.DictReader(f):
            points.setdefault(r["image"], []).append((float(r["x"]), float(r["y"])))
    fields = [rel for rel in part_of("chula_rbc12", PART) if rel in points][:limit]
    found = [(rel, *_detect(root / rel, MPP["chula_rbc12"], cfg, detector, perturb)) for rel in fields]
    if tol is None:
        radii = np.concatenate([np.sqrt(c.measures["area_um2"] / np.pi) / MPP["chula_rbc12"]
                                for _, c, _ in found])
        tol = 0.5 * float(np.median(radii)) if len(radii) else 0.0
    tp = n_det = n_lab = 0
    for rel, cells, _ in found:
        p = np.array(points[rel])
        n_det, n_lab = n_det + len(cells), n_lab + len(p)
        if len(cells):
            tp += matches(cells.centre, p, tol)
    prec, rec = tp / max(n_det, 1), tp / max(n_lab, 1)
    return {"n": n_lab, "fields": len(fields), "tolerance_px": tol, "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / max(prec + rec, 1e-12)}


def herlev(root: Path, limit: int, cfg, detector: str, perturb=None) -> dict:
    """The crops' cells, and the outlines of the one on the mask's cell (manifest column ``mask``)."""
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of

    with open(root / "manifest.csv", newline="") as f:
        masks = {r["image"]: r["mask"] for r in csv.DictReader(f) if r.get("mask")}
    ok = one = n = 0
    scores = []
    for rel in part_of("herlev", PART)[:limit]:
        w = Image.open(root / rel).size[0]
        cells, _ = _detect(root / rel, HERLEV_WIDTH_UM / w, cfg, detector, perturb)
        n += 1
        one += len(cells) == 1
        if len(cells):
            big = int(np.argmax(cells.measures["area_um2"]))
            ok += bool(np.hypot(*(cells.centre[big] - (w - 1) / 2)) <= w / 4)
        if rel in masks:
            scores.append(herlev_dice(cells, np.asarray(Image.open(root / masks[rel]))))
    cell_d, nuc_d = np.mean(scores, axis=0) if scores else (float("nan"), float("nan"))
    return {"n": n, "one_cell": one / max(n, 1), "centred": ok / max(n, 1), "masks": len(scores),
            "cell_dice": float(cell_d), "nucleus_dice": float(nuc_d)}


def tiling_rate(root: Path, limit: int) -> float:
    """``prepare``'s tiling of the same BCCD fields (default settings, one process), megapixels/s."""
    import tempfile

    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.data.provenance.split_files import part_of

    files = [str(root / rel) for rel in part_of("bccd", "eval")[:limit]]
    cfg = PrepareConfig.model_validate({"output": {"workers": 1, "qa_thumbnails": 0}})
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_prepare(files, Path(out), cfg, log=lambda m: None)
        el = time.perf_counter() - t0
    return len(files) * 640 * 480 / 1e6 / el


def slide_memory(side: int) -> None:
    """Prepare a synthetic slide of ``side`` px without and with cell detection: seconds and peak RSS."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from predict_throughput import Stages, slide

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    st = Stages()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slide.tif"
        t0 = time.perf_counter()
        slide(path, side, mpp=0.25)
        print(f"slide {side} x {side} px at 0.25 um/px: {path.stat().st_size / 2**20:.0f} MB, "
              f"written in {time.perf_counter() - t0:.0f} s")
        for name, cells in (("tiling", False), ("tiling + cells", True)):
            cfg = build_config(PrepareConfig, "prepare", "smear_cells", values={
                "cells": {"enabled": cells}, "output": {"workers": 1, "qa_thumbnails": 0}})
            st.reset()
            st.enter(name)
            t0 = time.perf_counter()
            res = run_prepare([str(path)], Path(tmp) / name.replace(" ", ""), cfg, log=lambda m: None)
            el = time.perf_counter() - t0
            n = res.rows[0].get("n_cells", "") if res.rows else ""
            print(f"  {name:<16} {el:7.1f} s  {side * side / 1e6 / el:6.2f} MP/s  peak RSS "
                  f"{st.peak.get(name, float('nan')):6.0f} MB" + (f"  {n} cells" if cells else ""))


def score(data: Path, limit: int, smear, pap, det: str) -> tuple[dict, float]:
    """One detector on the three sets, unperturbed, printed; (its table row, chula's match distance)."""
    b = bccd(data / "bccd", limit, smear, det)
    print(f"{'BCCD white cells':<28} {det:<10} n={b['n']} "
          f"recall (centre in box) {b['recall_centre']:.3f}  "
          f"recall (IoU>=0.5) {b['recall_iou50']:.3f}  {b['mpix_s']:.2f} MP/s")
    print(f"{'BCCD white-cell outlines':<28} {det:<10} n={b['boxes']} on {b['fields']} fields: nucleus Dice "
          f"{b['nucleus_dice']:.3f}  split {100 * b['split']:.1f}%  merged {100 * b['merged']:.1f}%  "
          f"recall (IoU>=0.5, the cell on the nucleus) {b['iou_recall']:.3f}")
    c = chula(data / "chula_rbc12", limit, smear, det)
    print(f"{'chula_rbc12 red cells':<28} {det:<10} n={c['n']} on {c['fields']} fields, match within "
          f"{c['tolerance_px']:.1f} px: precision {c['precision']:.3f} recall {c['recall']:.3f} "
          f"F1 {c['f1']:.3f}")
    h = herlev(data / "herlev", limit, pap, det)
    print(f"{'Herlev single cells':<28} {det:<10} n={h['n']} one cell {h['one_cell']:.3f}  "
          f"largest centred {h['centred']:.3f}")
    print(f"{'Herlev outlines':<28} {det:<10} n={h['masks']}: cell Dice {h['cell_dice']:.3f}  "
          f"nucleus Dice {h['nucleus_dice']:.3f}")
    return row(b, c, h), c["tolerance_px"]


def perturbed(data: Path, limit: int, smear, pap, det: str, tol: float) -> dict[str, dict]:
    """The table's rows of one detector under each perturbation (chula held to the unperturbed ``tol``)."""
    rows = {}
    for name, f in PERTURBATIONS.items():
        t0 = time.perf_counter()
        rows[name] = row(bccd(data / "bccd", limit, smear, det, f),
                         chula(data / "chula_rbc12", limit, smear, det, f, tol),
                         herlev(data / "herlev", limit, pap, det, f))
        print(f"  {det} perturbed: {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=10_000, help="at most this many images per data set")
    ap.add_argument("--part", default="eval", choices=("eval", "pretrain"),
                    help="the split's part scored: the detector's settings were chosen on 'pretrain'")
    ap.add_argument("--slide-side", type=int, default=0, help="also a synthetic slide of this side (px)")
    ap.add_argument("--perturb", action="store_true", help="also every set under each image perturbation")
    ap.add_argument("--out", type=Path, help="also write the summary table (markdown) to this file")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    a = ap.parse_args()
    global PART
    PART = a.part
    data = Path(a.data)
    if not (data / "bccd").is_dir():
        print(f"shared data not found under {data}: nothing to score (give --data)")
        return 0
    from cytofm.config.loader import load_preset
    from cytofm.data.prepare.config import PrepareConfig

    smear = PrepareConfig.model_validate(load_preset("prepare", "smear_cells")).cells
    pap = PrepareConfig.model_validate(load_preset("prepare", "pap_cells")).cells
    print(f"part of the shipped split: {PART}")
    print(f"{'set':<28} {'detector':<10} result")
    rows, tols = {}, {}
    for det in ("watershed", "otsu"):
        base, tols[det] = score(data, a.limit, smear, pap, det)
        rows[det] = {"none": base}
    rate = tiling_rate(data / "bccd", min(a.limit, 60))
    print(f"prepare's tiling of the same BCCD fields: {rate:.2f} MP/s")
    if a.slide_side:
        slide_memory(a.slide_side)
    if a.perturb:
        for det in rows:
            rows[det].update(perturbed(data, a.limit, smear, pap, det, tols[det]))
    md = f"Cell outlines, part {PART}" + (f", at most {a.limit} images per set" if a.limit < 10_000 else "")
    md += "\n\n" + table(rows)
    print("\n" + md)
    if a.out:
        a.out.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
