"""Scale-robust pretraining on a 2-core CPU: what covering several magnifications in the pool or in the
crops does to frozen features, measured on the EVALUATION parts of the shipped split.

    python benchmarks/scale_study.py OUT [--shared ../shared/data] [--preset cpu_dinov2] [--fields 60]
        [--variants base,multiscale_pool,small_crops] [--set KEY=VALUE ...]

Pool (pretraining parts only): BCCD and chula_rbc12 fields tiled at 96 px, Herlev cells, CRIC cells.
Variants, each one run of ``--preset`` (default ``cpu_dinov2``, the CPU preset that shows a learning signal
on unseen cells: docs/dinov2_reference.md) with the same iterations, batch and seed:

- ``base``: that pool at the images' own scale;
- ``multiscale_pool``: plus the same fields and CRIC cells at half magnification (96 px tiles read from
  192 px, cells halved), so cells appear at two sizes;
- ``small_crops``: the base pool with global crops down to 8% of a sample (from 25%) and local crops down
  to 2% (from 5%): zoomed-in views of single cells.

Evaluation (``cytofm benchmark`` machinery: folds x seeds, corrected resampled t intervals, Holm over the
comparisons): Herlev 7-class on its evaluation part, and chula_rbc12 red-cell morphology on the annotated
cells of ``--fields`` evaluation-part fields (seeded) cropped at 48 px (the cell fills the view) and at
112 px (the cell with its neighbours: a lower magnification), both resized to the encoder's input; linear
probe and kNN; each variant against ``base``, and a random-init ViT-Ti/16 for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "base": {"pool": ("bccd", "chula", "herlev", "cric"), "overrides": []},
    "multiscale_pool": {"pool": ("bccd", "chula", "herlev", "cric", "bccd_half", "chula_half", "cric_half"),
                        "overrides": []},
    "small_crops": {"pool": ("bccd", "chula", "herlev", "cric"),
                    "overrides": ["crops.global_scale=[0.08, 1.0]", "crops.local_scale=[0.02, 0.25]"]},
}
HALF = ["resolution.mpp=0.5", "resolution.target_mpp=1.0"]  # nominal values: only their ratio matters


def prepare_pool(shared: Path, work: Path) -> dict[str, str]:
    """Every pool source, prepared once from the pretraining parts (manifests with absolute paths)."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.data.provenance.split_files import write_part_manifest

    q = ["output.qa_thumbnails=0"]
    m = {ds: write_part_manifest(shared / ds, ds, "pretrain", work / f"{ds}_pretrain.csv")
         for ds in ("bccd", "chula_rbc12", "herlev", "cric")}
    jobs = {"bccd": (m["bccd"], "smear_fields", []), "chula": (m["chula_rbc12"], "smear_fields", []),
            "cric": (m["cric"], "cells", []), "bccd_half": (m["bccd"], "smear_fields", HALF),
            "chula_half": (m["chula_rbc12"], "smear_fields", HALF), "cric_half": (m["cric"], "cells", HALF)}
    out = {"herlev": str(m["herlev"])}
    for name, (manifest, preset, extra) in jobs.items():
        dest = work / "pool" / name
        if not dest.exists():
            run_prepare([str(manifest)], dest, build_config(PrepareConfig, "prepare", preset, q + extra),
                        log=lambda s: None)
        out[name] = str(dest)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--preset", default="cpu_dinov2")
    ap.add_argument("--fields", type=int, default=60)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    from cytofm.config.loader import build_config
    from cytofm.eval.config import BenchmarkConfig
    from cytofm.pipeline.benchmark import run_benchmark
    from cytofm.ssl.config import PretrainConfig
    from cytofm.ssl.trainer import SSLTrainer

    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool = prepare_pool(a.shared, a.out)
    print(f"pool prepared in {time.perf_counter() - t0:.0f} s", flush=True)
    runs = {}
    for v in a.variants.split(","):
        spec = VARIANTS[v]
        cfg = build_config(PretrainConfig, "pretrain", a.preset, [*spec["overrides"], *a.overrides])
        run = a.out / "runs" / v
        t = time.perf_counter()
        SSLTrainer(cfg, [pool[s] for s in spec["pool"]], run, log=lambda s: print(s, flush=True)).run()
        print(f"{v}: pretrained in {time.perf_counter() - t:.0f} s", flush=True)
        runs[v] = f"cytofm:{run}"
    from readout_study import chula_points  # the same seeded choice of fields, here from the evaluation part

    points = chula_points(a.shared, a.out, a.fields, part="eval")
    herlev = str((a.shared / "herlev" / "manifest.csv").resolve())
    chula = {"data": str(points), "points": str(points), "label": "type", "group_column": "field",
             "group_duplicates": False, "exclude": ["uncategorised", "stomatocyte", "elliptocyte"],
             "mode": "image", "eval": "probe", "methods": ["linear", "knn"]}
    encs = [*runs.values(), "random:vit_tiny_patch16_224"]
    base = runs.get("base", encs[0])
    cfg = build_config(BenchmarkConfig, values={
        "encoders": encs, "baselines": [], "comparisons": [f"{e} vs {base}" for e in encs if e != base],
        "tasks": [
            {"name": "herlev_7class_eval_part", "data": herlev, "split": "cytofm:herlev", "part": "eval",
             "label": "label7", "mode": "image", "eval": "probe", "methods": ["linear", "knn"]},
            {"name": "chula_rbc_type_eval_48px", **chula, "crop_size": 48},
            {"name": "chula_rbc_type_eval_112px", **chula, "crop_size": 112},
        ]})
    run_benchmark(cfg, a.out / "benchmark", a.out / "benchmark", log=print)
    print((a.out / "benchmark" / "results.md").read_text())
    print(f"scale study finished in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
