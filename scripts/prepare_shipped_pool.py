"""Prepare the shipped encoder's pretraining pool in one process, and say how `cytofm pretrain` reads it.

    python scripts/prepare_shipped_pool.py POOL PREP [--cells] [--workers N]

POOL holds bccd/ and chula_rbc12/ (blood-smear fields), herlev/ and cric/ (single Pap cells), as
scripts/build_pretraining_pool.py writes it (pretraining parts only). Fields are prepared at three scales
(224 px tiles, 112 px tiles, 224 px tiles at half resolution) so that cells reach the model from field
magnification to single-cell zoom; Pap cells are whole images. ``--cells``: the cells `prepare --cells`
finds in the BCCD and chula_rbc12 fields become samples of their own beside those (each the square
`extract --mode cells` reads), taking a quarter of the batches; the other sources keep their proportions.
This is the pool chosen on the pretraining parts (docs/benchmarks/pretraining_cpu.md, "Cells in the pool").

Writes PREP/<source>/ and PREP/pretrain_args.txt: the `--data` options and the `data.weights` /
`data.cells` overrides, one per line, in the order the weights follow. One process, so the eight to ten
prepares share one start-up (eight CLI processes took two minutes of a GPU call).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare
from cytofm.data.provenance.split_files import SMEAR_MPP as BLOOD

SCALES = {"224": [], "112": ["tiling.patch_size=112"],
          "half": ["resolution.mpp=1", "resolution.target_mpp=2"]}
# fields 0.6 (BCCD 0.2, chula 0.4; per scale 0.4/0.4/0.2), single Pap cells 0.4 (Herlev 0.2, CRIC 0.2)
FIELD_WEIGHTS = {"bccd": (0.08, 0.08, 0.04), "chula_rbc12": (0.16, 0.16, 0.08)}
PAP = {"herlev": 0.2, "cric": 0.2}
CELL_SHARE = 0.25


def sources(cells: bool) -> list[tuple[str, str, str, list[str], float, bool]]:
    """(name, dataset, preset, overrides, weight, read as cells) of every source, in order."""
    out = []
    for ds in BLOOD:
        blood = ["metadata.organ=blood", "metadata.stain=giemsa"]
        for (scale, extra), w in zip(SCALES.items(), FIELD_WEIGHTS[ds], strict=True):
            out.append((f"{ds}_{scale}", ds, "default", [*blood, *extra], w, False))
    for ds, w in PAP.items():
        out.append((ds, ds, "cells", ["metadata.organ=cervix", "metadata.stain=pap"], w, False))
    if cells:
        out = [(*s[:4], s[4] * (1 - CELL_SHARE), s[5]) for s in out]
        for ds, mpp in BLOOD.items():
            out.append((f"{ds}_cells", ds, "smear_cells", [f"resolution.mpp={mpp}", "metadata.organ=blood"],
                        CELL_SHARE / len(BLOOD), True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool", type=Path)
    ap.add_argument("prep", type=Path)
    ap.add_argument("--cells", action="store_true", help="the blood fields' detected cells as samples too")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    a = ap.parse_args()
    args, weights, as_cells = [], [], []
    for name, ds, preset, extra, w, cell in sources(a.cells):
        t0 = time.perf_counter()
        cfg = build_config(PrepareConfig, "prepare", preset,
                           [*extra, "output.qa_thumbnails=0", f"output.workers={a.workers}"])
        run_prepare([str(a.pool / ds)], a.prep / name, cfg, log=lambda m: None)
        print(f"{name}: prepared in {time.perf_counter() - t0:.1f} s", flush=True)
        args += ["--data", str(a.prep / name)]
        weights.append(round(w, 6))
        as_cells.append("true" if cell else "false")
    args.append(f"data.weights=[{','.join(f'{w:g}' for w in weights)}]")
    if a.cells:
        args.append(f"data.cells=[{','.join(as_cells)}]")
    (a.prep / "pretrain_args.txt").write_text("\n".join(args) + "\n")
    print(f"{a.prep / 'pretrain_args.txt'}: {len(weights)} sources, weights sum {sum(weights):.3f}")


if __name__ == "__main__":
    main()
