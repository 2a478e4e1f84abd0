"""Where the time of `cytofm predict` goes: prepare, extract, apply, heatmaps (GeoJSON included), on a folder
of fields and on one whole slide, against the target apply + heatmaps + GeoJSON <= 10% of the extract time.

Usage: python benchmarks/predict_throughput.py [--fields 40] [--field-size 1024x768] [--slide-side 9000]
                                              [--keep DIR]

In a temporary folder (``--keep DIR``: in DIR, kept) it makes a model as a lab would: 12 synthetic 480 px
fields of two kinds (purple cells: benign, red cells: malignant), `cytofm extract` with the shipped encoder
``cytofm`` (ViT-S/16) in tiles mode, `cytofm mil` (2 folds x 1 seed, a few epochs). Then `run_predict`
applies it to (A) a manifest of ``--fields`` new labelled fields (12 heatmaps) and (B) one synthetic
pyramidal TIFF slide of ``--slide-side`` px at 0.5 um/px (JPEG tiles, written by libvips without holding it
in memory, read through OpenSlide; 1 heatmap; ``--slide-side 0`` or no OpenSlide: skipped). The slide is
tiled at native resolution, as the model's prepare settings (no resolution target) say.

Per input: the stage times `run_predict` reports, the GeoJSON share of the apply stage (every item's
``geojson/<id>.geojson``, timed around ``attention_geojson``), the extract rate in instances/s (so ratios
compare across machines), the ratio (apply + heatmaps) / extract, and the peak resident memory of this
process in each stage (sampled every 20 ms; prepare's worker processes are not counted).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

GLASS = (222, 220, 214)
KINDS = {"benign": (120, 80, 160), "malignant": (190, 70, 70)}
TARGET = 0.10


def smear(h: int, w: int, n_cells: int, color, seed: int) -> np.ndarray:
    """Noisy off-white glass with ``n_cells`` stained disks of radius 20-34 px."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), GLASS, np.float32) + rng.normal(0, 2.0, (h, w, 3))
    for _ in range(n_cells):
        r = int(rng.integers(20, 35))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        yy, xx = np.mgrid[cy - r:cy + r + 1, cx - r:cx + r + 1]
        d = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[cy - r:cy + r + 1, cx - r:cx + r + 1][d] = color
    return np.clip(img, 0, 255).astype(np.uint8)


def fields(root: Path, n: int, h: int, w: int, seed: int) -> Path:
    """``n`` fields alternating benign / malignant (about one cell per 36000 px^2) and their manifest."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        kind = list(KINDS)[k % 2]
        Image.fromarray(smear(h, w, max(4, h * w // 36000), KINDS[kind], seed * 1000 + k)).save(
            root / f"{seed}_{k}.png")
        rows.append({"path": f"{seed}_{k}.png", "label": kind})
    with open(root / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, ["path", "label"])
        wr.writeheader()
        wr.writerows(rows)
    return root / "manifest.csv"


def slide(path: Path, n: int, mpp: float = 0.5) -> None:
    """An n x n pyramidal TIFF: a 5% glass margin around a smear, benign cells on the left half and
    malignant ones on the right (1024 px tiles repeated), JPEG in 256 px tiles, ``mpp`` um/px."""
    import pyvips

    t, m = 1024, n // 20
    inner = n - 2 * m

    def half(color, seed: int, width: int):
        a = smear(t, t, 90, color, seed)
        tile = pyvips.Image.new_from_memory(a.tobytes(), t, t, 3, "uchar")
        return tile.replicate((width + t - 1) // t, (inner + t - 1) // t).crop(0, 0, width, inner)

    left = half(KINDS["benign"], 1, inner // 2)
    tissue = left.join(half(KINDS["malignant"], 2, inner - inner // 2), "horizontal")
    img = tissue.embed(m, m, n, n, extend="background", background=list(GLASS))
    img.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg",
                 Q=90, xres=1000 / mpp, yres=1000 / mpp, resunit="cm")


class Stages:
    """Peak RSS of this process per stage (a sampling thread), and the seconds spent in GeoJSON writing;
    the stages are marked by wrapping the functions `run_predict` calls."""

    def __init__(self):
        self.stage, self.peak, self.geojson = "setup", {}, 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        threading.Thread(target=self._sample, daemon=True).start()

    def rss_mb(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page / 2**20
        except OSError:
            return float("nan")

    def _sample(self):
        while not self._stop.wait(0.02):
            s = self.stage
            self.peak[s] = max(self.peak.get(s, 0.0), self.rss_mb())

    def enter(self, stage: str):
        self.stage = stage
        self.peak[stage] = max(self.peak.get(stage, 0.0), self.rss_mb())

    def reset(self):
        self.peak, self.geojson = {}, 0.0
        self.enter("setup")

    def wrap(self, module, name: str, stage: str | None, after: str | None = None, timed=False):
        fn = getattr(module, name, None)
        if fn is None:
            return False

        def wrapped(*a, **k):
            if stage:
                self.enter(stage)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if timed:
                    self.geojson += time.perf_counter() - t0
                if after:
                    self.enter(after)

        setattr(module, name, wrapped)
        return True


def cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from cytofm.cli.main import app

    r = CliRunner().invoke(app, args)
    if r.exit_code != 0:
        raise SystemExit(f"cytofm {args[0]} failed ({r.exit_code}):\n{r.output[-3000:]}\n{r.exception!r}")


def train(root: Path) -> Path:
    manifest = fields(root / "train", 12, 480, 480, seed=0)
    cli(["extract", "--input", str(manifest), "--mode", "tiles", "--encoder", "cytofm", "--out",
         str(root / "train_store")])
    cli(["mil", "--features", str(root / "train_store"), "--label", "label", "--out", str(root / "model"),
         "--folds", "2", "--seeds", "0", "--epochs", "20", "lr=0.003"])
    return root / "model"


def predict(model: Path, source: Path, out: Path, heatmaps: int, st: Stages) -> dict:
    from cytofm.features.store import load_store
    from cytofm.pipeline.predict import run_predict

    st.reset()
    notes: list[str] = []
    t0 = time.perf_counter()
    try:
        r = run_predict(model, source, out, heatmaps=heatmaps, log=notes.append)
    except Exception as e:  # reported in the table, the other input still runs
        from cytofm.utils.display import display_text

        return {"error": display_text(f"{type(e).__name__}: {e}"), "seconds": time.perf_counter() - t0,
                "stage": st.stage}
    st.enter("done")
    rows = load_store(out / "features")
    ba = (r.metrics or {}).get("balanced_accuracy", {}).get("value")
    return {"items": r.n_items, "instances": sum(int(x["n_instances"]) for x in rows), "sec": r.seconds,
            "geojson": st.geojson, "peak": dict(st.peak), "ba": ba,
            "n_geojson": len(list((out / "geojson").glob("*.geojson"))),
            "warnings": [n for n in notes if "warn" in n.lower() or "skipped" in n.lower()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=40, help="new fields to predict (0 skips them)")
    ap.add_argument("--field-size", default="1024x768", help="WxH of a field")
    ap.add_argument("--slide-side", type=int, default=9000, help="slide side in px (0 skips the slide)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    a = ap.parse_args()
    fw, fh = (int(v) for v in a.field_size.lower().split("x"))

    import torch

    import cytofm.data.prepare.run as prep_mod
    import cytofm.features.extract as ext_mod
    import cytofm.viz.heatmaps as heat_mod
    from cytofm.data.sources.source import OPENSLIDE_ERROR

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {os.cpu_count()} CPUs ({cores} usable), torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, python {sys.version.split()[0]}; "
          f"GLIBC_TUNABLES {'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}")
    st = Stages()
    st.wrap(prep_mod, "run_prepare", "prepare")
    st.wrap(ext_mod, "run_extract", "extract", after="apply")
    st.wrap(heat_mod, "attention_preview_png", "heatmaps")
    has_geojson = st.wrap(heat_mod, "attention_geojson", None, timed=True)

    root = a.keep or Path(tempfile.mkdtemp(prefix="predict_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {root}" + ("" if a.keep else " (removed at the end)"))
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        model = train(root)
        print(f"model: 12 fields of 480x480, encoder cytofm (ViT-S/16), tiles, ABMIL 2 folds x 1 seed "
              f"({time.perf_counter() - t0:.0f} s to make)")
        inputs = []
        if a.fields:
            t0 = time.perf_counter()
            inputs.append((f"{a.fields} fields {fw}x{fh}", fields(root / "new_fields", a.fields, fh, fw, 1),
                           12))
            print(f"input A: {a.fields} fields of {fw}x{fh} px, labelled ({time.perf_counter() - t0:.0f} s)")
        if a.slide_side and OPENSLIDE_ERROR is None:
            t0 = time.perf_counter()
            (root / "slide").mkdir(exist_ok=True)
            path = root / "slide" / "slide.tif"
            slide(path, a.slide_side)
            inputs.append((f"slide {a.slide_side}x{a.slide_side}", path, 1))
            print(f"input B: pyramidal TIFF {a.slide_side}x{a.slide_side} px at 0.5 um/px, "
                  f"{path.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - t0:.0f} s to write)")
        elif a.slide_side:
            print(f"input B skipped: OpenSlide not available ({OPENSLIDE_ERROR})")
        results = []
        for name, source, hm in inputs:
            results.append((name, hm, predict(model, source, root / f"pred_{len(results)}", hm, st)))
        report(results, has_geojson)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{time.perf_counter() - t_all:.0f} s in all")


def report(results: list, has_geojson: bool) -> None:
    head = (f"{'input':<22} {'items':>5} {'inst':>5} | {'prepare s':>9} {'extract s':>9} {'inst/s':>6} | "
            f"{'apply s':>7} {'heatmaps s':>10} {'(geojson)':>9} | {'(a+h)/e':>7} {'<=10%':>5}")
    print()
    print(head)
    print("-" * len(head))
    for name, _, r in results:
        if "error" in r:
            print(f"{name:<22} FAILED in {r['stage']} after {r['seconds']:.0f} s: {r['error'][:300]}")
            continue
        s = r["sec"]
        ext = s.get("extract", 0.0)
        ratio = (s.get("apply", 0.0) + s.get("heatmaps", 0.0)) / ext if ext else float("nan")
        geo = f"{r['geojson']:.2f}" if has_geojson else "-"
        rate = r["instances"] / max(ext, 1e-9)
        print(f"{name:<22} {r['items']:>5} {r['instances']:>5} | {s.get('prepare', 0):>9.1f} {ext:>9.1f} "
              f"{rate:>6.1f} | {s.get('apply', 0):>7.2f} {s.get('heatmaps', 0):>10.2f} {geo:>9} | "
              f"{ratio:>7.1%} {'yes' if ratio <= TARGET else 'NO':>5}")
    print()
    for name, hm, r in results:
        if "error" in r:
            continue
        pk = "  ".join(f"{k} {v:.0f}" for k, v in r["peak"].items() if k in
                       ("prepare", "extract", "apply", "heatmaps"))
        ba = "" if r["ba"] is None else f"; balanced accuracy {r['ba']:.3f}"
        print(f"{name}: peak RSS MB by stage: {pk}; {hm} heatmap(s) asked, {r['n_geojson']} GeoJSON written"
              f"{ba}")
        for w in r["warnings"][:5]:
            from cytofm.utils.display import display_text

            print(f"  note: {display_text(w)[:200]}")
    print(f"(a+h)/e = (apply + heatmaps) / extract, target <= {TARGET:.0%}; apply = store check, model, "
          "leakage flags (source hashes), tables, attention.h5, every item's GeoJSON (the (geojson) column)"
          + ("" if has_geojson else " (this tree writes none)"))


if __name__ == "__main__":
    main()
