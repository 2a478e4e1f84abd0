"""Cell detection speed of this checkout against an earlier commit's, in the same run: 60 BCCD and 60
chula_rbc12 fields of the evaluation part detected by each (preset ``smear_cells``), in alternating
subprocesses (so both see the same machine state), best of ``--repeats`` per side.

Usage: git worktree add ../cytofm-prev <commit>
       python benchmarks/cell_detection_speed.py --before ../cytofm-prev/src [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from shared_data import add_data_option, data_folder

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
from cytofm.config.loader import load_preset
from cytofm.data.cells.detect import detect_source
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.provenance.split_files import part_of
from cytofm.data.sources.source import ImageSource
data = Path(sys.argv[1])
cfg = PrepareConfig.model_validate(load_preset("prepare", "smear_cells")).cells
fields = [(data / "bccd" / r, 0.074) for r in part_of("bccd", "eval")[:60]]
fields += [(data / "chula_rbc12" / r, 0.19) for r in part_of("chula_rbc12", "eval")[:60]]
images = [(np.asarray(Image.open(p).convert("RGB")), mpp) for p, mpp in fields]
t0 = time.perf_counter()
n = 0
for rgb, mpp in images:
    n += len(detect_source(ImageSource("field.png", mpp, array=rgb), mpp, cfg))
print(json.dumps({"seconds": time.perf_counter() - t0, "cells": n,
                  "mpix": sum(a.shape[0] * a.shape[1] for a, _ in images) / 1e6}))
"""


def _run(src: str, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(data)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the earlier commit's src folder (a git worktree)")
    ap.add_argument("--repeats", type=int, default=3)
    add_data_option(ap)
    a = ap.parse_args()
    data = data_folder(a.data, doing="time")
    if data is None:
        return 0
    now = str(Path(__file__).resolve().parents[1] / "src")
    best: dict[str, dict] = {}
    for _ in range(a.repeats):
        for name, src in (("before", str(Path(a.before).resolve())), ("now", now)):
            r = _run(src, data)
            if name not in best or r["seconds"] < best[name]["seconds"]:
                best[name] = r
    for name, r in best.items():
        print(f"{name:<7} {r['mpix'] / r['seconds']:.2f} MP/s  ({r['seconds']:.1f} s, {r['cells']} cells, "
              f"best of {a.repeats})")
    print(f"now / before: {best['before']['seconds'] / best['now']['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
