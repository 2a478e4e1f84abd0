"""Throughput of `cytofm prepare` (megapixels/s) against plain image decoding in the same run.

Usage: python benchmarks/prepare_throughput.py [DATA_DIR]   (default: ../shared/data/bccd)

The reference is the cost of only decoding the same files with PIL, one process: preparation can
never beat it per process, so the ratio shows how much foreground finding, tiling and writing add.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare


def main() -> None:
    root = (Path(sys.argv[1]) if len(sys.argv) > 1
            else Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bccd")
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"no manifest at {manifest}: pass a folder with manifest.csv (e.g. shared/data/bccd)")
    files = sorted((root / "images").glob("*"))
    t0 = time.perf_counter()
    mp = 0.0
    for f in files:
        with Image.open(f) as im:
            im.load()
            mp += im.size[0] * im.size[1] / 1e6
    decode = mp / (time.perf_counter() - t0)
    print(f"{len(files)} images, {mp:.1f} MP; PIL decode only (1 process): {decode:.1f} MP/s")
    for workers in (1, 2):
        cfg = build_config(PrepareConfig, "prepare", "smear_fields",
                           [f"output.workers={workers}", "output.qa_thumbnails=0"])
        with tempfile.TemporaryDirectory() as tmp:
            res = run_prepare([str(manifest)], tmp, cfg, log=lambda m: None)
        rate = res.megapixels / res.seconds
        print(f"prepare, {workers} worker(s): {rate:.1f} MP/s, {len(res.rows) / res.seconds:.1f} images/s "
              f"({rate / decode:.2f}x decode-only), {res.n_patches} patches")


if __name__ == "__main__":
    main()
