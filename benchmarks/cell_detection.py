"""Cell detection scored on real annotations (evaluation parts of the shipped split), the default detector
(``watershed``) beside the plain baseline (``otsu``: Otsu's threshold and connected components) in the
same run, with the detection rate against ``prepare``'s tiling rate.

Usage: python benchmarks/cell_detection.py [--limit N] [--part eval|pretrain] [--data ../shared/data]
                                          [--slide-side 40000]

- BCCD white cells (Giemsa-like fields, VOC boxes of class WBC): recall with the detection's centre inside
  the box, and recall at IoU >= 0.5 between the detection's box and the annotated one.
- chula_rbc12 red cells (labelled centre points, only some cells of a field labelled): a detection matches
  a labelled point within half the median cell radius (one to one, nearest first); precision, recall, F1
  (precision counts unlabelled real cells as false detections, so recall is the number to read).
- Herlev Pap single-cell crops: one cell found, its centre within a quarter of the crop side of the centre.

Resolutions: BCCD 0.074 um/px (its median red-cell box, 102 px, taken as a 7.5 um red cell); chula 0.19
um/px (the 20 um scale bar some of its fields carry is 105 px long, e.g. images/169.jpg);
Herlev crops (40 px, scale not recorded) taken as 60 um wide (a squamous cell and its surround).
``--slide-side N``: also a synthetic N x N pyramidal TIFF at 0.25 um/px (the predict benchmark's slide: JPEG
tiles of stained disks, written by libvips), prepared with and without ``--cells`` in this process, with the
peak resident memory of each and the detection rate (the memory bound is the one ``prepare`` keeps).
Targets (issue on cells): BCCD white-cell recall >= 0.98; chula red-cell recall >= 0.95, F1 >= 0.85 and
>= the baseline's + 0.10.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

from cytofm.data.provenance.split_files import SMEAR_MPP as MPP

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


def _detect(path: Path, mpp: float, cfg, detector: str):
    from cytofm.data.cells.detect import detect_source
    from cytofm.data.sources.source import open_source

    src = open_source(path, "image", mpp)
    try:
        return detect_source(src, mpp, cfg.model_copy(update={"detector": detector})), src.width * src.height
    finally:
        src.close()


def bccd(root: Path, limit: int, cfg, detector: str) -> dict:
    from cytofm.data.provenance.split_files import part_of

    n = inside = iou = 0
    pixels, t0 = 0, time.perf_counter()
    for rel in part_of("bccd", PART)[:limit]:
        boxes = _voc_wbc(root / "annotations" / (Path(rel).stem + ".xml"))
        if not boxes:
            continue
        cells, px = _detect(root / rel, MPP["bccd"], cfg, detector)
        pixels += px
        for b in boxes:
            n += 1
            c = cells.centre
            hit = (c[:, 0] >= b[0]) & (c[:, 0] <= b[2]) & (c[:, 1] >= b[1]) & (c[:, 1] <= b[3])
            inside += bool(hit.any())
            iou += bool(any(_iou(cells.bbox[k], b) >= 0.5 for k in np.flatnonzero(hit)))
    return {"n": n, "recall_centre": inside / max(n, 1), "recall_iou50": iou / max(n, 1),
            "mpix_s": pixels / 1e6 / (time.perf_counter() - t0)}


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


def chula(root: Path, limit: int, cfg, detector: str) -> dict:
    from cytofm.data.provenance.split_files import part_of

    points: dict[str, list] = {}
    with open(root / "cells.csv", newline="") as f:
        for r in csv.DictReader(f):
            points.setdefault(r["image"], []).append((float(r["x"]), float(r["y"])))
    fields = [rel for rel in part_of("chula_rbc12", PART) if rel in points][:limit]
    found = [(rel, *_detect(root / rel, MPP["chula_rbc12"], cfg, detector)) for rel in fields]
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


def herlev(root: Path, limit: int, cfg, detector: str) -> dict:
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of

    ok = one = n = 0
    for rel in part_of("herlev", PART)[:limit]:
        w = Image.open(root / rel).size[0]
        cells, _ = _detect(root / rel, HERLEV_WIDTH_UM / w, cfg, detector)
        n += 1
        one += len(cells) == 1
        if len(cells):
            big = int(np.argmax(cells.measures["area_um2"]))
            ok += bool(np.hypot(*(cells.centre[big] - (w - 1) / 2)) <= w / 4)
    return {"n": n, "one_cell": one / max(n, 1), "centred": ok / max(n, 1)}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=10_000, help="at most this many images per data set")
    ap.add_argument("--part", default="eval", choices=("eval", "pretrain"),
                    help="the split's part scored: the detector's settings were chosen on 'pretrain'")
    ap.add_argument("--slide-side", type=int, default=0, help="also a synthetic slide of this side (px)")
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
    for det in ("watershed", "otsu"):
        b = bccd(data / "bccd", a.limit, smear, det)
        print(f"{'BCCD white cells':<28} {det:<10} n={b['n']} "
              f"recall (centre in box) {b['recall_centre']:.3f}  "
              f"recall (IoU>=0.5) {b['recall_iou50']:.3f}  {b['mpix_s']:.2f} MP/s")
        c = chula(data / "chula_rbc12", a.limit, smear, det)
        print(f"{'chula_rbc12 red cells':<28} {det:<10} n={c['n']} on {c['fields']} fields, match within "
              f"{c['tolerance_px']:.1f} px: precision {c['precision']:.3f} recall {c['recall']:.3f} "
              f"F1 {c['f1']:.3f}")
        h = herlev(data / "herlev", a.limit, pap, det)
        print(f"{'Herlev single cells':<28} {det:<10} n={h['n']} one cell {h['one_cell']:.3f}  "
              f"largest centred {h['centred']:.3f}")
    rate = tiling_rate(data / "bccd", min(a.limit, 60))
    print(f"prepare's tiling of the same BCCD fields: {rate:.2f} MP/s")
    if a.slide_side:
        slide_memory(a.slide_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
