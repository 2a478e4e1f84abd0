"""Triage of one whole slide of about 100,000 cells on this machine's CPU, beyond detection: the first pass
(morphometrics cell classifier over every cell) hands the most abnormal candidates to the shipped encoder.

The slide is a mosaic of real chula_rbc12 evaluation-part fields (640 x 480 at 0.19 um/px, repeated in
order until the mosaic holds about ``--cells`` detected cells), written as a pyramidal JPEG TIFF. It is
prepared once (`prepare --cells`, timed apart: detection is the scale issue's), then triaged with
`triage --first-pass`; the time printed is triage's wall time on the prepared slide. The full pipeline
(the shipped encoder on every cell) is not run: its time is the measured encoder rate in the same run times
the number of cells.

Needs the cell classifiers of `benchmarks/triage.py` (its --work folder):

    python benchmarks/triage.py                      # once: trains both cell classifiers
    python benchmarks/triage_slide.py --candidates 5000
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import add_data_option, data_folder  # noqa: E402

MPP = 0.19
FIELD_W, FIELD_H = 640, 480


def cytofm(*args: str) -> float:
    """Run a cytofm command; its wall time in seconds."""
    exe = Path(sys.executable).parent / "cytofm"
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"cytofm {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def write_mosaic(data: Path, path: Path, n_fields: int) -> tuple[int, int]:
    """A pyramidal TIFF of ``n_fields`` evaluation-part fields in a near-square grid, 5% glass margin."""
    import pyvips

    from cytofm.data.provenance.split_files import part_of

    files = part_of("chula_rbc12", "eval")
    cols = max(1, round((n_fields * FIELD_H / FIELD_W) ** 0.5))
    tiles = [pyvips.Image.new_from_file(str(data / "chula_rbc12" / files[k % len(files)]))
             .crop(0, 0, FIELD_W, FIELD_H) for k in range(n_fields)]
    grid = pyvips.Image.arrayjoin(tiles, across=cols)
    m = grid.width // 20
    glass = [int(v) for v in tiles[0].getpoint(5, 5)]
    img = grid.embed(m, m, grid.width + 2 * m, grid.height + 2 * m, extend="background", background=glass)
    img.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg",
                 Q=90, xres=1000 / MPP, yres=1000 / MPP, resunit="cm")
    return img.width, img.height


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(ap)
    ap.add_argument("--work", default="triage-bench/pretrain150_eval10000",
                    help="benchmarks/triage.py's work folder (its two cell classifiers)")
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--cells-per-field", type=float, default=89.0,
                    help="detected cells per field (89 on the 237 labelled evaluation fields)")
    ap.add_argument("--candidates", type=int, default=5000)
    ap.add_argument("--abnormal", default="schistocyte")
    ap.add_argument("--prepare-only", action="store_true", help="write and prepare the slide, then stop")
    a = ap.parse_args()
    data = data_folder(a.data, "chula_rbc12", "triage")
    work = Path(a.work).resolve()
    models = {e: work / f"cell_probe_{e}" for e in ("cytofm", "morphometrics")}
    if data is None:
        return 0
    if not a.prepare_only and not all((m / "model.json").is_file() for m in models.values()):
        print(f"no cell classifiers under {work}: run benchmarks/triage.py first")
        return 0
    slide_dir = work / f"slide_{a.cells}"
    slide_dir.mkdir(parents=True, exist_ok=True)
    tif, prep = slide_dir / "slide.tif", slide_dir / "prepared"
    if not (prep / "manifest.csv").is_file():
        w, h = write_mosaic(data, tif, int(a.cells / a.cells_per_field))
        with open(slide_dir / "slide.csv", "w", newline="") as f:
            csv.writer(f).writerows([["image", "mpp"], [str(tif), MPP]])
        took = cytofm("prepare", str(slide_dir / "slide.csv"), "--out", str(prep), "--preset", "smear_cells",
                      "--cells")
        print(f"slide {w} x {h} px ({w * h / 1e6:.0f} MP); prepare --cells (detection) {took:.0f} s")
    if a.prepare_only:
        return 0
    out = slide_dir / f"triage_{a.candidates}"
    took = cytofm("triage", "--model", str(models["cytofm"]), "--first-pass", str(models["morphometrics"]),
                  "--candidates", str(a.candidates), "--input", str(prep), "--out", str(out), "--abnormal",
                  a.abnormal, "--score", "top", "adequacy.preparation=smear")
    rec = json.loads((out / "triage.json").read_text())
    s, kept = rec["seconds"], rec["first_pass"]
    rate = kept["candidates"] / max(s["extract"], 1e-9)
    print(f"{kept['cells']} cells, {kept['candidates']} candidates; triage {took:.0f} s ({took / 60:.1f} "
          f"min) beyond detection (target <= 10 min): first pass {s['first_pass']:.0f} s, the shipped "
          f"encoder on the candidates {s['extract']:.0f} s ({rate:.1f} cells/s), classify and tables "
          f"{s['apply']:.0f} s, galleries and review page {s['triage']:.0f} s, the rest (start-up, checks) "
          f"{took - s['first_pass'] - s['extract'] - s['apply'] - s['triage'] - s['prepare']:.0f} s")
    print(f"the shipped encoder on every cell instead: {kept['cells'] / rate / 60:.0f} min at the same rate "
          f"({kept['cells'] / rate / took:.1f}x this triage)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
