"""Start-up: `--help`, `--version` and a refused option answer within 2 s, because they import none of the
heavy libraries (torch, timm, scikit-learn, umap); timed against a bare `python -c pass` in the same run."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = dict(os.environ, PYTHONPATH=SRC, CYTOFM_NO_REEXEC="1")
HEAVY = {"torch", "timm", "sklearn", "umap", "h5py", "matplotlib", "scipy"}
CALLS = [["--version"], ["--help"], ["mil", "--help"], ["extract", "--help"], ["pretrain", "--help"],
         ["prepare", "--help"], ["doctor", "--help"],
         ["extract", "--input", "x", "--mode", "image", "--out", "y", "--batch-size", "0"],
         ["mil", "--features", "f", "--label", "l", "--out", "o", "--folds", "1"]]


def _imported(args) -> tuple[set[str], int, str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "cytofm", *args], env=ENV,
                       capture_output=True, text=True, timeout=120)
    names = {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    return names, r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("args", CALLS, ids=" ".join)
def test_no_heavy_import_before_a_command_runs(args):
    names, rc, text = _imported(args)
    assert rc in (0, 2), text[-2000:]
    assert not (HEAVY & names), f"cytofm {' '.join(args)} imported {sorted(HEAVY & names)}"


def _seconds(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=ENV, capture_output=True, timeout=120)
    return time.perf_counter() - t


def test_version_help_and_refusals_within_two_seconds():
    bare = min(_seconds([sys.executable, "-c", "pass"]) for _ in range(3))
    for args in CALLS:
        t = min(_seconds([sys.executable, "-m", "cytofm", *args]) for _ in range(2))
        print(f"cytofm {' '.join(args)}: {t:.2f} s "
              f"({t / max(bare, 1e-3):.0f}x a bare python start, {bare:.3f} s)")
        assert t < 2.0, f"cytofm {' '.join(args)} took {t:.2f} s (a bare python start: {bare:.3f} s)"
