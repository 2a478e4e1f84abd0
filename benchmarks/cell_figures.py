"""QA figures of cell outlines on BCCD fields with nucleus masks: the fields where the detector installed in
this environment does worst (lowest nucleus Dice, and the white cells split or merged), each drawn with the
annotated nucleus (green), the detected cells (blue) and their nuclei (red).

Usage: python benchmarks/cell_figures.py --out docs/benchmarks/figures/cells_after.jpg [--part eval]
                                         [--fields A.jpg,B.jpg,...] [--n 6]

``--fields`` draws the named fields instead of the worst ones, so the same fields can be drawn by an
earlier commit's detector (run with that commit's ``src`` first on PYTHONPATH) beside today's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cell_detection import _detect, _iou, _voc_wbc  # noqa: E402
from cell_scoring import WhiteCellScores  # noqa: E402
from shared_data import add_data_option, data_folder  # noqa: E402

MPP = 0.074


def _cells(root: Path, name: str):
    from cytofm.config.loader import load_preset
    from cytofm.data.prepare.config import PrepareConfig

    cfg = PrepareConfig.model_validate(load_preset("prepare", "smear_cells")).cells
    return _detect(root / "images" / name, MPP, cfg, cfg.detector)[0]


def _score(root: Path, name: str, cells) -> tuple[float, bool]:
    """(nucleus Dice, some white cell split or merged) of one field, scored as the benchmark scores it."""
    from PIL import Image

    gt = np.asarray(Image.open(root / "nucleus_masks" / (Path(name).stem + ".png")).convert("L")) > 127
    scores = WhiteCellScores()
    scores.add(cells, gt, _voc_wbc(root / "annotations" / f"{Path(name).stem}.xml"), _iou)
    return scores.dice[0], bool(scores.split or scores.merged)


def _draw(root: Path, name: str, cells, score: tuple[float, bool]) -> np.ndarray:
    from PIL import Image, ImageDraw

    rgb = np.asarray(Image.open(root / "images" / name).convert("RGB")).copy()
    gt = np.asarray(Image.open(root / "nucleus_masks" / (Path(name).stem + ".png"))) > 127
    rgb[gt] = (0.55 * rgb[gt] + 0.45 * np.array([0, 200, 0])).astype(np.uint8)
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    rings = [(c, (40, 60, 255)) for c in cells.contour] + [(n, (255, 0, 0)) for n in cells.nucleus]
    for ring, colour in rings:
        if len(ring) > 2:
            d.line([tuple(p) for p in ring] + [tuple(ring[0])], fill=colour, width=2)
    d.rectangle((0, 0, 639, 22), fill=(255, 255, 255))
    said = f"{name}  nucleus Dice {score[0]:.2f}" + ("  split/merged" if score[1] else "")
    d.text((4, 5), said, fill=(0, 0, 0))
    return np.asarray(im)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--part", default="eval", choices=("eval", "pretrain"))
    ap.add_argument("--fields", default="", help="comma-separated BCCD image names to draw (default: worst)")
    ap.add_argument("--n", type=int, default=6)
    add_data_option(ap)
    a = ap.parse_args()
    data = data_folder(a.data, needs="bccd/nucleus_masks", doing="draw")
    if data is None:
        return 0
    root = data / "bccd"
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of

    names = [n for n in a.fields.split(",") if n]
    if not names:
        pool = [Path(r).name for r in part_of("bccd", a.part)
                if (root / "nucleus_masks" / f"{Path(r).stem}.png").exists()]
        scored = [(n, _score(root, n, _cells(root, n))) for n in pool]
        scored.sort(key=lambda t: (not t[1][1], t[1][0]))  # split or merged first, then by Dice
        names = [n for n, _ in scored[:a.n]]
    tiles = []
    for n in names:
        cells = _cells(root, n)
        tiles.append(_draw(root, n, cells, _score(root, n, cells)))
    tiles += [np.full_like(tiles[0], 255)] * (len(tiles) % 2)
    grid = np.concatenate([np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)], 0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] // 2, grid.shape[0] // 2)).save(a.out, quality=85)
    print(f"{a.out}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
