"""`cytofm mil` before and after torch threads were sized to the model (issue #44, item 1), in one run on one
machine: ABMIL over 182 bags of 9 patches with the shipped encoder's width (384, synthetic features with a
planted signal, 5 classes), 5 folds x 3 seeds + refit, as the issue timed it (510 s before, 45 s with
OMP_NUM_THREADS=1, on 2 busy cores).

Three runs of the same command in subprocesses, each into a fresh folder: the code before the change (the
source tree ``--before-src``, through PYTHONPATH), the same with ``OMP_NUM_THREADS=1`` (the reference the
issue gives), and this tree. Printed: each wall time, the ratio before / after, and whether the results
(every saved model file, the per-fold and per-item tables) are identical.

    git worktree add ../cytofm-before 5d892af   # the commit before the change
    python benchmarks/mil_threads.py --before-src ../cytofm-before/src [--quick]

``--quick``: 60 bags, 3 folds x 1 seed, 10 epochs (a check that the script runs, about a minute).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AFTER_SRC = Path(__file__).resolve().parents[1] / "src"
COMPARED = ("folds_abmil.csv", "predictions_abmil.csv")


def make_store(root: Path, n: int, patches: int = 9, dim: int = 384, classes: int = 5) -> Path:
    """``n`` bags of ``patches`` instances; each class shifts one instance along its own direction."""
    sys.path.insert(0, str(AFTER_SRC))
    from cytofm.features.store import write_item
    from cytofm.utils.io import write_csv

    rng = np.random.default_rng(0)
    dirs = rng.normal(0, 1, (classes, dim)).astype(np.float32)
    rows = []
    for i in range(n):
        c = i % classes
        f = rng.normal(0, 1, (patches, dim)).astype(np.float32)
        f[int(rng.integers(patches))] += 0.6 * dirs[c]
        write_item(root / "features" / f"b{i:03d}.h5", f, np.zeros((patches, 2)), {"encoder": "synthetic"})
        rows.append({"id": f"b{i:03d}", "path": "", "h5": f"features/b{i:03d}.h5", "n_instances": patches,
                     "label": f"class{c}"})
    write_csv(root / "manifest.csv", rows)
    return root


def run(src: Path, store: Path, out: Path, args: list[str], omp: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(src)
    if omp:
        env["OMP_NUM_THREADS"] = omp
    cmd = [sys.executable, "-m", "cytofm", "mil", "--features", str(store), "--label", "label", "--out",
           str(out), "--refit", *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} (PYTHONPATH={src}) failed:\n{r.stderr[-3000:]}")
    threads = [ln.split("INFO ", 1)[-1] for ln in r.stderr.splitlines() if "torch threads:" in ln]
    if threads:
        print(f"    {threads[0]}")
    return wall


def identical(a: Path, b: Path) -> str:
    """``yes``, or what differs: every saved model byte for byte, and the per-fold and per-item tables in the
    columns both versions write (later versions add columns; the summary follows from these)."""
    files = sorted(str(p.relative_to(a)) for p in (a / "models").glob("*.safetensors"))
    differ = [f for f in files if not (b / f).is_file() or (a / f).read_bytes() != (b / f).read_bytes()]
    tables = [f for f in COMPARED if table(a / f, b / f) != table(b / f, a / f)]
    if not differ and not tables:
        return "yes"
    return (f"no ({len(differ)} of {len(files)} model files differ; tables differing: "
            f"{', '.join(tables) or 'none'})")


def table(path: Path, other: Path) -> list[dict]:
    with open(path, newline="") as f, open(other, newline="") as g:
        common = set(next(csv.reader(g)))
        return [{k: v for k, v in r.items() if k in common} for r in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before-src", type=Path, required=True,
                    help="the source tree of the code before the change")
    ap.add_argument("--quick", action="store_true", help="a smaller task: 60 bags, 3 folds x 1 seed")
    a = ap.parse_args()
    if not (a.before_src / "cytofm").is_dir():
        sys.exit(f"--before-src {a.before_src}: no cytofm package there")
    n, args = (60, ["--folds", "3", "--seeds", "0", "--epochs", "10"]) if a.quick else \
        (182, ["--folds", "5", "--seeds", "0,1,2", "--epochs", "50"])
    with tempfile.TemporaryDirectory(prefix="mil_threads_") as tmp:
        tmp = Path(tmp)
        store = make_store(tmp / "store", n)
        print(f"ABMIL, {n} bags of 9 x 384, {' '.join(args)} --refit; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}")
        times, ref_name = {}, "before, OMP_NUM_THREADS=1"
        for name, src, omp in (("before", a.before_src, None), (ref_name, a.before_src, "1"),
                               ("after", AFTER_SRC, None)):
            print(f"  {name}:")
            times[name] = run(src, store, tmp / name.replace(", ", "_").replace("=", ""), args, omp)
            print(f"    {times[name]:.1f} s")
        before, ref, after = (tmp / "before", tmp / "before_OMP_NUM_THREADS1", tmp / "after")
        print(f"before / after: {times['before'] / times['after']:.2f}x; "
              f"before with OMP_NUM_THREADS=1 / after: {times[ref_name] / times['after']:.2f}x")
        print(f"results identical: after = before with OMP_NUM_THREADS=1: {identical(ref, after)}; "
              f"after = before: {identical(before, after)}")


if __name__ == "__main__":
    main()
