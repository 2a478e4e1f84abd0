"""Folds as the unit of resume, with a real stop: `cytofm mil` killed by SIGTERM once its first fold x seed
model is finished, then the same command again, trains only the folds that were missing and ends with the
numbers and model files of an uninterrupted run, byte for byte."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cytofm
from cytofm.cli.main import app
from cytofm.features.store import write_item
from cytofm.utils.io import write_csv

SRC = str(Path(cytofm.__file__).resolve().parents[1])  # the tree under test (PYTHONPATH may point elsewhere)
ENV = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
ENV.update(PYTHONPATH=SRC, CYTOFM_NO_REEXEC="1")
N_FOLDS, SEEDS = 3, "0,1"  # 6 fold x seed models


def bag_store(root: Path, n: int = 36, d: int = 16) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = ["benign", "malignant"][i % 2]
        k = int(rng.integers(3, 8))
        f = rng.normal(0, 1, (k, d)).astype(np.float32)
        if label == "malignant":
            f[int(rng.integers(k))] += 3.0
        write_item(root / "features" / f"i{i:02d}.h5", f, np.zeros((k, 2)), {"encoder": "test"})
        rows.append({"id": f"i{i:02d}", "path": "", "h5": f"features/i{i:02d}.h5", "n_instances": k,
                     "label": label})
    write_csv(root / "manifest.csv", rows)
    return root


def mil_args(store: Path, out: Path) -> list[str]:
    return ["mil", "--features", str(store), "--label", "label", "--out", str(out), "--folds", str(N_FOLDS),
            "--seeds", SEEDS, "--epochs", "15", "--refit"]


@pytest.mark.slow  # two real processes importing torch and a reference run: ~25 s of CPU
def test_mil_killed_by_sigterm_resumes_training_only_the_missing_folds(tmp_path, monkeypatch):
    store, ref, got = bag_store(tmp_path / "s"), tmp_path / "ref", tmp_path / "got"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    r = CliRunner().invoke(app, mil_args(store, ref))
    assert r.exit_code == 0, r.output
    cmd = [sys.executable, "-m", "cytofm", *mil_args(store, got)]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    while not list((got / "fold_results").glob("*.npz")) and p.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 128 + signal.SIGTERM, text[-3000:]
    kept = {f.name: f.stat().st_mtime_ns for f in (got / "fold_results").glob("*.npz")}
    models = {f.name: f.stat().st_mtime_ns for f in (got / "models").glob("*.safetensors")}
    assert 1 <= len(kept) < 6, text[-3000:]

    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = " ".join(r.stderr.split())
    m = re.search(r"abmil: (\d+) of 6 fold x seed results reused .*?; (\d+) trained", log)
    assert m and (int(m[1]), int(m[2])) == (len(kept), 6 - len(kept)), log[-3000:]
    # the finished folds were not trained again: their records and models are the killed run's files
    after = {f.name: f.stat().st_mtime_ns for f in (got / "fold_results").glob("*.npz")}
    assert len(after) == 6 and all(after[k] == t for k, t in kept.items())
    for k in kept:
        model = k.replace(".npz", ".safetensors")
        assert (got / "models" / model).stat().st_mtime_ns == models[model]
    # and the result is the uninterrupted run's, exactly
    for name in ("summary_abmil.json", "folds_abmil.csv", "predictions_abmil.csv"):
        assert (got / name).read_bytes() == (ref / name).read_bytes(), name
    for f in sorted((ref / "models").glob("*.safetensors")):
        assert (got / "models" / f.name).read_bytes() == f.read_bytes(), f.name
    for seed in (0, 1):
        a, b = np.load(ref / f"attention_{seed}.npz"), np.load(got / f"attention_{seed}.npz")
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
