"""Object annotations (Pascal VOC boxes) used to score foreground finding and attention maps."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np


def read_voc_boxes(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """``[(name, [xmin, ymin, xmax, ymax]), ...]`` from a Pascal VOC XML file."""
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        box = np.array([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        out.append(((obj.findtext("name") or "").strip(), box))
    return out


def coverage_of_boxes(coords: np.ndarray, size: int, boxes: list[np.ndarray],
                      shape: tuple[int, int]) -> tuple[int, int]:
    """(covered, total) pixel area of ``boxes`` that falls inside the patches at ``coords``."""
    cover = np.zeros(shape, bool)
    for x, y in coords:
        cover[y:y + size, x:x + size] = True
    covered = total = 0
    for b in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        x0, y0 = max(x0, 0), max(y0, 0)
        region = cover[y0:y1, x0:x1]
        covered += int(region.sum())
        total += region.size
    return covered, total
