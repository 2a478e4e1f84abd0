"""Z-stacks: does reading the right plane matter, how well is it found, and what does it cost?

probe   Synthetic z-stacks from real EVALUATION-part cells of chula_rbc12 (never pretrained on): each cell
        sharp at a random plane of 5, blur growing by ``--step`` px per plane away from it, the sensor noise
        put back; the shipped encoder's features of the sharp originals, the middle plane, ``best`` (the
        highest focus score of the cell's crop) and ``edf`` (and of the colour and texture baseline,
        ``handcrafted``, which reads fine texture directly); a linear probe (5 folds grouped by field) on
        each, paired against the originals on the same folds (corrected resampled t; the probe is
        deterministic, so the folds are the only training variation).
select  How often the plane chosen from compressed tile sizes (``zstack.select=bytes``, nothing decoded) is
        the one the focus score picks (``select=focus``), on 5-plane stacks of real evaluation fields tilted
        through focus, for aligned patches (a patch one tile) and for 224 px patches over 256 px tiles.
slide   A 5-plane OME-TIFF of a ``--slide-side`` px slide (real fields repeated, JPEG tiles when
        imagecodecs is installed, zlib otherwise; the sharp plane changes every 512 px): ``prepare`` with
        one plane (``--z 2``, focus scored) against ``best`` (and ``edf``, ``best`` with every plane scored
        where ``--all-policies``): seconds, ratio to the one-plane run, and peak resident memory.

Usage: python benchmarks/zstack.py [--data ../shared/data] [--fields 60] [--encoders cytofm,handcrafted]
                                   [--step 1.5] [--slide-side 8000]
                                   [--all-policies] [--skip probe,select,slide]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from focus_calibration import blur, with_noise  # noqa: E402  (the calibration's defocus, one definition)

N_PLANES = 5
CONDITIONS = ("original", "middle plane", "best", "edf")


def _chula(data: Path):
    from cytofm.data.provenance.split_files import load_split

    split = load_split("chula_rbc12")
    with open(data / "chula_rbc12" / "cells.csv", newline="") as f:
        return [r for r in csv.DictReader(f)
                if split.get(r["image"]) == "eval" and r["type"] != "uncategorised"]


def _planes(region: np.ndarray, field: np.ndarray, sharp: int, step: float, seed: int) -> list[np.ndarray]:
    return [region if z == sharp else with_noise(blur(region, step * abs(z - sharp)), field, seed + z)
            for z in range(N_PLANES)]


def cell_images(data: Path, n_fields: int, step: float, crop: int = 80, seed: int = 0):
    """Each cell's four images (CONDITIONS), its type, its field, and whether best found the sharp plane."""
    from PIL import Image

    from cytofm.data.prepare.focus import focus_score
    from cytofm.data.prepare.foreground import background_intensity
    from cytofm.data.sources.source import ImageSource
    from cytofm.data.sources.zstack.edf import MARGIN_PX, fuse

    rows = _chula(data)
    fields = sorted({r["image"] for r in rows})
    pick = set(random.Random(seed).sample(fields, min(n_fields, len(fields))))
    rng = np.random.default_rng(seed)
    out, pad = [], MARGIN_PX
    for k, name in enumerate(sorted(pick)):
        rgb = np.asarray(Image.open(data / "chula_rbc12" / name).convert("RGB"))
        src, bg = ImageSource(name, array=rgb), background_intensity(rgb)
        for j, r in enumerate(x for x in rows if x["image"] == name):
            x0, y0 = int(float(r["x"])) - crop // 2 - pad, int(float(r["y"])) - crop // 2 - pad
            region = src.read(x0, y0, crop + 2 * pad)
            sharp = int(rng.integers(N_PLANES))
            planes = _planes(region, rgb, sharp, step, seed=1000 * k + 10 * j)
            c = slice(pad, pad + crop)
            z = int(np.argmax([focus_score(p[c, c], bg)[0] for p in planes]))
            out.append({"type": r["type"], "field": name, "found": z == sharp,
                        "images": [region[c, c], planes[N_PLANES // 2][c, c], planes[z][c, c],
                                   fuse(planes)[c, c]]})
    return out


def embed(images: list[np.ndarray], spec: str, batch: int = 64) -> np.ndarray:
    import torch

    from cytofm.features.extract import embed_batch
    from cytofm.models.zoo import create_encoder
    from cytofm.utils.distributed import pick_dtype

    enc = create_encoder(spec)
    dev = torch.device("cpu")
    dtype = pick_dtype("auto", dev)
    feats = [embed_batch(enc, torch.stack([enc.preprocess(a) for a in images[i:i + batch]]), dev, dtype,
                         False) for i in range(0, len(images), batch)]
    return np.concatenate(feats)


def probe(data: Path, n_fields: int, step: float, specs: list[str]) -> None:
    from cytofm.eval.splits import make_splits

    t0 = time.perf_counter()
    cells = cell_images(data, n_fields, step)
    groups = np.array([c["field"] for c in cells])
    types = np.array([c["type"] for c in cells])
    keep = np.array([len(set(groups[types == t])) >= 5 and (types == t).sum() >= 20 for t in types])
    cells, groups, types = [c for c, k in zip(cells, keep, strict=True) if k], groups[keep], types[keep]
    classes = sorted(set(types))
    y = np.array([classes.index(t) for t in types])
    found = np.mean([c["found"] for c in cells])
    print(f"probe: {len(cells)} evaluation-part cells of {len(set(groups))} fields, {len(classes)} types; "
          f"blur {step:g} px per plane from the sharp one; best found the sharp plane for {found:.1%}; "
          f"stacks made in {time.perf_counter() - t0:.0f} s")
    splits = make_splits(y, 5, (0,), groups=groups, warn=lambda m: print(f"  note: {m}"))
    for spec in specs:
        t1 = time.perf_counter()
        feats = {name: embed([c["images"][i] for c in cells], spec) for i, name in enumerate(CONDITIONS)}
        print(f"  {spec}: embedded in {time.perf_counter() - t1:.0f} s")
        _probe_table(feats, y, groups, splits, len(classes), spec)
    print(f"probe finished in {time.perf_counter() - t0:.0f} s")


def _probe_table(feats: dict, y: np.ndarray, groups: np.ndarray, splits, n_classes: int, spec: str) -> None:
    import warnings

    from cytofm.eval.intervals import corrected_t_interval
    from cytofm.eval.metrics import classification_metrics
    from cytofm.eval.probes import linear_probe

    scores = {name: [] for name in CONDITIONS}
    for sp in splits:
        for name, x in feats.items():
            p = linear_probe(x[sp.train], y[sp.train], x[sp.test], n_classes, sp.seed, groups[sp.train])
            with warnings.catch_warnings():  # a rare type may be absent from one test fold
                warnings.simplefilter("ignore", UserWarning)
                scores[name].append(classification_metrics(y[sp.test], p, n_classes)["balanced_accuracy"])
    ratio = 1 / (len(splits) - 1)
    print(f"\n| features ({spec}, linear probe) | balanced accuracy | minus the originals' (95% CI) |")
    print("|---|---|---|")
    base = np.array(scores["original"])
    for name in CONDITIONS:
        s = np.array(scores[name])
        ci = corrected_t_interval(s - base, ratio)
        diff = "" if name == "original" else f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"
        print(f"| {name} | {s.mean():.3f} | {diff} |")


def _tilted(field: np.ndarray, rng, step: float) -> np.ndarray:
    """Planes of a field sharp at one random plane on its left, another on its right, blended between."""
    a, b = (int(v) for v in rng.integers(N_PLANES, size=2))
    w = field.shape[1]
    t = np.clip((np.arange(w) - 0.3 * w) / (0.4 * w), 0, 1)[None, :, None]
    left, right = _planes(field, field, a, step, 0), _planes(field, field, b, step, 7)
    return np.stack([(lp * (1 - t) + rp * t).round().astype(np.uint8) for lp, rp in zip(left, right,
                                                                                        strict=True)])


def select(data: Path, n_fields: int, step: float) -> None:
    """Agreement of select=bytes with select=focus per patch, and the focus lost where they differ."""
    import tifffile
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of
    from cytofm.data.sources.zstack.source import ZStackSource

    files = part_of("chula_rbc12", "eval")[:n_fields]
    codecs = [("zlib", None)] + ([("jpeg", q) for q in (75, 90, 95)] if _has_jpeg() else [])
    rng = np.random.default_rng(1)
    stacks = [_tilted(np.asarray(Image.open(data / "chula_rbc12" / f).convert("RGB")), rng, step)
              for f in files]
    print(f"\nselect: {len(files)} evaluation fields, 5 planes tilted through focus (blur {step:g} px per "
          "plane, sensor noise put back)")
    print("| tiles | patches | codec | same plane as the focus score | focus kept where not (median) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for tile, patch in ((128, 128), (256, 224)):
            for codec, quality in codecs:
                same, kept = [], []
                for i, planes in enumerate(stacks):
                    path = Path(tmp) / f"{i}.ome.tif"
                    tifffile.imwrite(path, planes, ome=True, photometric="rgb", tile=(tile, tile),
                                     compression=codec, metadata={"axes": "ZYXS"},
                                     compressionargs={"level": quality} if quality else None)
                    with ZStackSource(path, select="bytes") as b, ZStackSource(path, select="focus") as f:
                        for y in range(0, b.height - patch + 1, patch):
                            for x in range(0, b.width - patch + 1, patch):
                                zb = b.best(x, y, patch, patch)[0]
                                zf, sc = f.best(x, y, patch, patch)
                                same.append(zb == zf)
                                if zb != zf:
                                    kept.append(sc[zb] / sc[zf])
                med = f"{np.median(kept):.2f} of the best ({len(kept)})" if kept else "-"
                name = codec + (f" q{quality}" if quality else "")
                print(f"| {tile} px | {patch} px | {name} | {np.mean(same):.1%} of {len(same)} | {med} |")


def _has_jpeg() -> bool:
    try:
        import imagecodecs

        return bool(imagecodecs.JPEG8.available)
    except Exception:
        return False


def write_slide(path: Path, side: int, data: Path, step: float) -> str:
    """A 5-plane OME-TIFF: a 5% glass margin around 512 px blocks of real evaluation fields, each block sharp
    at its own plane, 256 px tiles (JPEG where imagecodecs is installed, else zlib), written tile by tile."""
    import tifffile
    from PIL import Image

    from cytofm.data.provenance.split_files import part_of

    t, b, m = 256, 512, side // 20
    fields = [np.asarray(Image.open(data / "chula_rbc12" / f).convert("RGB"))[:b, :b]
              for f in part_of("chula_rbc12", "eval")[:4]]
    fields = [np.pad(f, ((0, b - f.shape[0]), (0, b - f.shape[1]), (0, 0)), mode="reflect") for f in fields]
    blurred = [[f if d == 0 else with_noise(blur(f, step * d), f, d) for d in range(N_PLANES)]
               for f in fields]
    glass = fields[0][np.unravel_index(np.argmax(fields[0].sum(2)), fields[0].shape[:2])]
    glass_tile = np.broadcast_to(glass, (t, t, 3)).copy()
    n = -(-side // t)

    def tiles():
        for z in range(N_PLANES):
            for ty in range(n):
                for tx in range(n):
                    x, y = tx * t, ty * t
                    if not (m <= x < side - m and m <= y < side - m):
                        yield glass_tile
                        continue
                    bx, by = x // b, y // b
                    sharp, v = (bx + 2 * by) % N_PLANES, (3 * bx + by) % len(fields)
                    yield blurred[v][abs(z - sharp)][y % b:y % b + t, x % b:x % b + t]

    codec = "jpeg" if _has_jpeg() else "zlib"
    tifffile.imwrite(path, tiles(), shape=(N_PLANES, side, side, 3), dtype=np.uint8, tile=(t, t),
                     photometric="rgb", compression=codec, ome=True, maxworkers=2,
                     metadata={"axes": "ZYXS", "PhysicalSizeZ": 1.0, "PhysicalSizeX": 0.25,
                               "PhysicalSizeY": 0.25})
    return codec


def _warm_up(tmp: Path, data: Path) -> None:
    """One small stack prepared first, so that imports and first calls weigh on no timed run."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    write_slide(tmp / "warm.ome.tif", 1024, data, 1.5)
    cfg = build_config(PrepareConfig, "prepare", "default",
                       values={"output": {"workers": 1, "qa_thumbnails": 0}})
    run_prepare([str(tmp / "warm.ome.tif")], tmp / "warm", cfg, log=lambda m: None)


def slide(data: Path, side: int, step: float, all_policies: bool) -> None:
    from predict_throughput import Stages

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare

    runs = [("one plane (--z 2)", "2", "auto"), ("best", "best", "auto")]
    if all_policies:
        runs += [("best, every plane scored", "best", "focus"), ("edf", "edf", "auto")]
    st = Stages()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.ome.tif"
        t0 = time.perf_counter()
        codec = write_slide(path, side, data, step)
        print(f"\nslide: {N_PLANES} planes of {side} x {side} px ({codec} tiles): "
              f"{path.stat().st_size / 2**20:.0f} MB, written in {time.perf_counter() - t0:.0f} s; one "
              f"decoded plane would be {side * side * 3 / 2**20:.0f} MB")
        print("| prepare | seconds | ratio to one plane | MP/s | peak RSS MB | patches |")
        print("|---|---|---|---|---|---|")
        ref = None
        _warm_up(Path(tmp), data)
        for name, z, sel in runs:
            cfg = build_config(PrepareConfig, "prepare", "default", values={
                "zstack": {"z": z, "select": sel}, "foreground": {"focus": "all"},
                "output": {"workers": 1, "qa_thumbnails": 0}})
            st.reset()
            st.enter(name)
            t1 = time.perf_counter()
            res = run_prepare([str(path)], Path(tmp) / z / sel, cfg, log=lambda m: None)
            el = time.perf_counter() - t1
            ref = ref or el
            print(f"| {name} | {el:.1f} | {el / ref:.2f}x | {side * side / 1e6 / el:.1f} | "
                  f"{st.peak.get(name, float('nan')):.0f} | {res.n_patches} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--fields", type=int, default=60)
    ap.add_argument("--step", type=float, default=1.5, help="blur (px) added per plane from the sharp one")
    ap.add_argument("--encoders", default="cytofm,handcrafted", help="comma-separated encoder specs")
    ap.add_argument("--slide-side", type=int, default=8000)
    ap.add_argument("--all-policies", action="store_true", help="also best with every plane scored, and edf")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: probe, select, slide")
    a = ap.parse_args()
    if not (a.data / "chula_rbc12" / "cells.csv").is_file():
        print(f"shared data not found under {a.data} (needs chula_rbc12/)")
        return 1
    skip = set(filter(None, a.skip.split(",")))
    t0 = time.perf_counter()
    if "probe" not in skip:
        probe(a.data, a.fields, a.step, a.encoders.split(","))
    if "select" not in skip:
        select(a.data, 20, a.step)
    if "slide" not in skip:
        slide(a.data, a.slide_side, a.step, a.all_policies)
    print(f"\nfinished in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
