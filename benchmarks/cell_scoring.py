"""Helpers of ``cell_detection.py``: the image perturbations its ``--perturb`` runs, detection of an image
held in memory, the outline scores per field (BCCD) and per crop (Herlev), and the markdown table.

A perturbation is ``f(rgb, mpp) -> (rgb, mpp told to the detector)``: the image changed as another
scanner, stain batch or compression would change it, or the um/px given wrong with the image unchanged."""

from __future__ import annotations

import io

import numpy as np

from cytofm.eval.segmentation import dice, fill_outlines, white_cell_outcome

TARGETS = {"bccd_nucleus_dice": 0.90, "split": 0.01, "merged": 0.03, "iou_recall": 0.95, "chula_recall": 0.95}
"""The issue's targets (Dice and recalls at least, split and merged rates at most)."""
ROBUST_DICE, ROBUST_SPLIT = 0.05, 0.02
"""Under a perturbation, BCCD nucleus Dice within 0.05 and split rate within 2 points of unperturbed."""


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def stain(factor: float):
    """Every stain's amount times ``factor``: optical density against the glass (each channel's 99th
    percentile brightness; a crop without glass, its brightest pixels) scaled, then back to brightness."""
    def f(rgb, mpp):
        x = rgb.astype(np.float32) + 1
        glass = np.percentile(x.reshape(-1, 3), 99, axis=0)
        od = -np.log10(x / glass)
        return _u8(glass * 10.0 ** (-factor * od) - 1), mpp
    return f


def hue(degrees: float):
    """Hue turned by ``degrees`` (HSV), saturation and value kept."""
    def f(rgb, mpp):
        from skimage.color import hsv2rgb, rgb2hsv

        hsv = rgb2hsv(rgb)
        hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
        return _u8(hsv2rgb(hsv) * 255), mpp
    return f


def yellow(rgb, mpp):
    """A yellow cast (old lamp, yellowed mounting medium): blue times 0.8."""
    x = rgb.astype(np.float32)
    x[..., 2] *= 0.8
    return _u8(x), mpp


def blur(rgb, mpp):
    """Slightly out of focus: Gaussian blur of 1 px sigma."""
    from scipy.ndimage import gaussian_filter

    return _u8(gaussian_filter(rgb.astype(np.float32), sigma=(1, 1, 0))), mpp


def jpeg(rgb, mpp):
    """JPEG at quality 60 (PIL), decoded back."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=60)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), mpp


def mpp_off(factor: float):
    """The image unchanged, the detector told ``mpp * factor``."""
    return lambda rgb, mpp: (rgb, mpp * factor)


PERTURBATIONS = {"stain x0.6": stain(0.6), "stain x1.6": stain(1.6), "hue +15": hue(15), "hue -15": hue(-15),
                 "yellow (blue x0.8)": yellow, "blur 1 px": blur, "JPEG q60": jpeg,
                 "um/px -25%": mpp_off(0.75), "um/px +25%": mpp_off(1.25)}


def detect_perturbed(path, mpp: float, cfg, perturb):
    """(cells, pixels) of the image at ``path`` perturbed, detected from memory as ``prepare`` would."""
    from cytofm.data.cells.detect import detect_source
    from cytofm.data.sources.image_io import read_rgb
    from cytofm.data.sources.source import ImageSource

    rgb, told = perturb(read_rgb(path)[0], mpp)
    src = ImageSource(path, told, array=np.ascontiguousarray(rgb))
    try:
        return detect_source(src, told, cfg), src.width * src.height
    finally:
        src.close()


class WhiteCellScores:
    """BCCD outline scores summed over fields: nucleus Dice per field, split / merged / IoU per box."""

    def __init__(self):
        self.dice: list[float] = []
        self.boxes = self.split = self.merged = self.iou = 0

    def add(self, cells, nucleus: np.ndarray, boxes, iou) -> None:
        """One field: ``nucleus`` its annotated mask (bool), ``boxes`` its white cells, ``iou(a, b)``."""
        shape = nucleus.shape
        self.dice.append(dice(fill_outlines(cells.nucleus, shape) > 0, nucleus))
        # only cells meeting a box can be its pieces or its cell; filling all took 30 ms a field
        near = np.zeros(len(cells), bool)
        for b in boxes:
            near |= (cells.bbox[:, 0] < b[2]) & (cells.bbox[:, 2] > b[0]) & (cells.bbox[:, 1] < b[3]) \
                & (cells.bbox[:, 3] > b[1])
        labels = fill_outlines([c if k else c[:0] for c, k in zip(cells.contour, near, strict=True)], shape)
        for b in boxes:
            o = white_cell_outcome(labels, b, nucleus)
            self.boxes += 1
            self.split += o["split"]
            self.merged += o["merged"]
            self.iou += bool(o["label"]) and iou(cells.bbox[o["label"] - 1], b) >= 0.5

    def result(self) -> dict:
        n = max(self.boxes, 1)
        return {"fields": len(self.dice), "boxes": self.boxes,
                "nucleus_dice": float(np.mean(self.dice)) if self.dice else float("nan"),
                "split": self.split / n, "merged": self.merged / n, "iou_recall": self.iou / n}


def herlev_dice(cells, mask: np.ndarray) -> tuple[float, float]:
    """(cell Dice, nucleus Dice) of the detected cell overlapping the mask's cell (2 nucleus, 3 cytoplasm)
    most; (0, 0) when none does."""
    cell, nucleus = np.isin(mask, (2, 3)), mask == 2
    best, best_k = 0, -1
    for k, ring in enumerate(cells.contour):
        overlap = int((fill_outlines([ring], mask.shape)[cell] > 0).sum())
        if overlap > best:
            best, best_k = overlap, k
    if best_k < 0:
        return 0.0, 0.0
    return (dice(fill_outlines([cells.contour[best_k]], mask.shape) > 0, cell),
            dice(fill_outlines([cells.nucleus[best_k]], mask.shape) > 0, nucleus))


def row(b: dict, c: dict, h: dict) -> dict:
    """The table's numbers from the BCCD, chula and Herlev results of one detector and perturbation."""
    return {"bccd_nucleus_dice": b["nucleus_dice"], "split": b["split"], "merged": b["merged"],
            "iou_recall": b["iou_recall"], "herlev_nucleus_dice": h["nucleus_dice"],
            "herlev_cell_dice": h["cell_dice"], "chula_recall": c["recall"]}


def verdict(r: dict, base: dict | None) -> str:
    """'ok' or what misses: the targets unperturbed (``base`` None), else the robustness bounds."""
    if base is None:
        low = [k for k in ("bccd_nucleus_dice", "iou_recall", "chula_recall") if not r[k] >= TARGETS[k]]
        high = [k for k in ("split", "merged") if not r[k] <= TARGETS[k]]
        return ", ".join(low + high) or "ok"
    miss = []
    if not abs(r["bccd_nucleus_dice"] - base["bccd_nucleus_dice"]) <= ROBUST_DICE:
        miss.append(f"Dice {r['bccd_nucleus_dice'] - base['bccd_nucleus_dice']:+.3f}")
    if not abs(r["split"] - base["split"]) <= ROBUST_SPLIT:
        miss.append(f"split {100 * (r['split'] - base['split']):+.1f} pt")
    return ", ".join(miss) or "ok"


def table(rows: dict[str, dict[str, dict]]) -> str:
    """Markdown: one table per detector, one row per perturbation ('none' first)."""
    head = ("| perturbation | BCCD nucleus Dice | split % | merged % | IoU>=0.5 recall | Herlev nucleus Dice "
            "| Herlev cell Dice | chula recall | targets |\n|---|---|---|---|---|---|---|---|---|")
    out = []
    for det, by_name in rows.items():
        out += [f"### {det}", "", head]
        base = by_name["none"]
        for name, r in by_name.items():
            out.append(f"| {name} | {r['bccd_nucleus_dice']:.3f} | {100 * r['split']:.1f} | "
                       f"{100 * r['merged']:.1f} | {r['iou_recall']:.3f} | {r['herlev_nucleus_dice']:.3f} | "
                       f"{r['herlev_cell_dice']:.3f} | {r['chula_recall']:.3f} | "
                       f"{verdict(r, None if name == 'none' else base)} |")
        out.append("")
    return "\n".join(out)
