"""Peak memory of `cytofm prepare` and `cytofm extract` on very large plain images.

Usage: python benchmarks/large_image_memory.py [SIZE ...]   (default: 9000 20000 40000)

Each SIZE x SIZE PNG is generated in a temporary folder by libvips without ever being held in memory:
near-white glass with one stained cell per 4096 px tile (a 40000 px image is a few MB on disk). Each
command runs in its own process (`--workers` 1 for prepare and 0 for extract, so all work happens in
that one process) and its peak resident memory is read from the kernel (`getrusage`, RUSAGE_CHILDREN).
9000 px (243 MB decoded) is below the default whole-image budget of 256 MB and is decoded whole; the
larger ones are read in regions. The decoded copy libvips keeps on disk is reported too.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_png(n: int, path: Path) -> None:
    import pyvips

    t = 4096
    xy = pyvips.Image.xyz(t, t)
    cell = ((xy[0] - 700) ** 2 + (xy[1] - 900) ** 2) < 70**2
    tile = cell.ifthenelse([120, 80, 160], [236, 234, 228]).cast("uchar")
    tile.replicate((n + t - 1) // t, (n + t - 1) // t).crop(0, 0, n, n).pngsave(str(path), compression=6)


def peak_mb(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Run ``cmd`` in a fresh Python that reports its children's peak RSS, so runs do not mix."""
    probe = ("import resource, subprocess, sys, time; t = time.time(); "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.time() - t, "
             "r.returncode); "
             "sys.stderr.write(r.stdout[-2000:] + r.stderr[-2000:])")
    r = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
    mb, secs, rc = r.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return float(mb), float(secs), r.stderr


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [9000, 20000, 40000]
    cytofm = [sys.executable, "-m", "cytofm"]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TMPDIR=tmp, CYTOFM_NO_REEXEC="1")
        print(f"{'image':>13} {'png MB':>7} {'decoded MB':>10} | {'prepare peak MB':>15} {'s':>5} | "
              f"{'extract peak MB':>15} {'s':>5} | patches")
        for n in sizes:
            d = Path(tmp) / str(n)
            d.mkdir()
            png = d / "field.png"
            make_png(n, png)
            prep, feats = d / "prep", d / "feats"
            p_mb, p_s, _ = peak_mb([*cytofm, "prepare", str(png), "--out", str(prep), "--workers", "1",
                                    "--qa", "0"], env)
            e_mb, e_s, _ = peak_mb([*cytofm, "extract", "--encoder", "random:vit_tiny_patch16_224", "--input",
                                    str(prep), "--mode", "tiles", "--out", str(feats), "--workers", "0"], env)
            with open(prep / "manifest.csv") as f:
                patches = next(csv.DictReader(f))["n_patches"]
            print(f"{n:>6}x{n:<6} {png.stat().st_size / 1e6:>7.1f} {n * n * 3 / 1e6:>10.0f} | "
                  f"{p_mb:>15.0f} {p_s:>5.0f} | {e_mb:>15.0f} {e_s:>5.0f} | {patches}", flush=True)
            for p in d.iterdir():
                if p.is_file():
                    p.unlink()


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"peak = largest resident set of the command's process (getrusage); {time.time() - t0:.0f} s in "
          f"all; libvips's decoded copy of images above the budget goes to a temporary file on disk")
