"""Fault injection (slow tier): kill `prepare`, `extract`, `pretrain` and `benchmark` with SIGKILL or a
scheduler's SIGTERM at seeded random moments, ten times each into the same output, then let them finish:
the outputs must equal an uninterrupted run's.

Run: ``pytest -q -m slow tests/cli/test_fault_injection.py``. Kill moments are a seeded random fraction
(0.2-1.0) of an uninterrupted run's wall time, measured in the same session.
"""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.helpers import smear

pytestmark = pytest.mark.slow

KILLS = 10
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="2")


def _cmd(*args):
    return [sys.executable, "-m", "cytofm", *map(str, args)]


def _run(args) -> float:
    t = time.perf_counter()
    r = subprocess.run(_cmd(*args), env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return time.perf_counter() - t


def _interrupted(args, out: Path, rng, t_ref: float, check) -> list[str]:
    """Kill the command KILLS times at random moments into ``out``, then let it finish and ``check`` it.

    Kill moments are a random fraction (0.2-1.0) of the latest uninterrupted run's wall time, so they
    follow the machine's load. A run that finishes before its kill moment is checked too; its output is
    then wiped so that the next kills land on work again (otherwise every later run only reuses).
    """
    events, kills, fresh, t_full = [], 0, True, t_ref
    for _ in range(6 * KILLS):
        if kills == KILLS:
            break
        t0 = time.perf_counter()
        p = subprocess.Popen(_cmd(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        delay = rng.uniform(0.2, 1.0) * t_full
        try:
            p.wait(timeout=delay)
            text = p.stdout.read()
            assert p.returncode == 0 and "Traceback" not in text, text[-3000:]
            check()
            if fresh:
                t_full = time.perf_counter() - t0
            shutil.rmtree(out)
            fresh = True
            events.append(f"finished<{delay:.1f}s")
        except subprocess.TimeoutExpired:
            # half the kills are a scheduler's SIGTERM: a clean stop (exit 143, no traceback), nothing lost
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            p.send_signal(sig)
            p.wait(timeout=300)
            if sig == signal.SIGTERM:
                text = p.stdout.read()
                # 143: stopped cleanly by cytofm's handler; -15: the default action, when the signal lands
                # while Python starts or shuts down (no handler of ours runs then: nothing begun or all done)
                assert p.returncode in (0, 143, -signal.SIGTERM) and "Traceback" not in text, (
                    p.returncode, text[-3000:])
            kills += 1
            fresh = False
            events.append(f"{sig.name}@{delay:.1f}s")
        p.stdout.close()
    assert kills == KILLS, f"only {kills} kills in {len(events)} runs: {events}"
    _run(args)
    check()
    return events


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.name != ".cytofm.lock"}


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fi")
    fields = root / "fields"
    for i in range(24):
        cls = ("benign", "malignant")[i % 2]
        (fields / cls).mkdir(parents=True, exist_ok=True)
        cells = tuple((40 + 97 * ((i + k) % 5), 50 + 71 * ((i * 3 + k) % 5),
                       15 + 4 * ((i + k) % 4)) for k in range(4))
        Image.fromarray(smear(h=360, w=480, cells=cells, seed=i)[0]).save(fields / cls / f"f{i:02d}.png")
    return root


def _check_prepare(ref: Path, got: Path):
    assert _csv(got / "manifest.csv") == _csv(ref / "manifest.csv")
    assert _csv(got / "skipped.csv") == _csv(ref / "skipped.csv")
    assert _files(got) - {"summary.json"} == _files(ref) - {"summary.json"}  # no stray temporaries either
    for r in _csv(ref / "manifest.csv"):
        with h5py.File(ref / r["coords"]) as a, h5py.File(got / r["coords"]) as b:
            assert (np.array_equal(a["coords"][:], b["coords"][:])
                    and np.array_equal(a["foreground"][:], b["foreground"][:]))
    for p in (ref / "patches").rglob("*.png"):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(got / p.relative_to(ref))))


def test_prepare_killed_ten_times_equals_uninterrupted(inputs, tmp_path):
    def args(out):
        return ["prepare", inputs / "fields", "--out", out, "--labels-from-folders", "--workers", "1",
                            "--qa", "-1", "--materialize", "png", "tiling.patch_size=96"]
    t_ref = _run(args(tmp_path / "ref"))
    kills = _interrupted(args(tmp_path / "got"), tmp_path / "got", random.Random(1), t_ref,
                         lambda: _check_prepare(tmp_path / "ref", tmp_path / "got"))
    print(f"prepare: uninterrupted {t_ref:.1f}s; {kills}")


def test_extract_killed_ten_times_equals_uninterrupted(inputs, tmp_path):
    prep = tmp_path / "prep"
    _run(["prepare", inputs / "fields", "--out", prep, "--labels-from-folders", "--workers", "1", "--qa", "0",
          "tiling.patch_size=224"])

    def args(out):
        return ["extract", "--encoder", "random:vit_tiny_patch16_224", "--input", prep, "--mode", "tiles",
                            "--out", out, "--batch-size", "16", "--workers", "0", "--precision", "fp32"]
    t_ref = _run(args(tmp_path / "ref"))
    ref, got = tmp_path / "ref", tmp_path / "got"

    def check():
        assert _csv(got / "manifest.csv") == _csv(ref / "manifest.csv")
        assert _files(got) == _files(ref)
        for r in _csv(ref / "manifest.csv"):
            with h5py.File(ref / r["h5"]) as a, h5py.File(got / r["h5"]) as b:
                assert np.array_equal(a["coords"][:], b["coords"][:])
                # batches are cut differently after a resume; fp32 results agree to rounding
                assert np.allclose(a["features"][:], b["features"][:], atol=1e-5)
                assert a.attrs["item_key"] == b.attrs["item_key"]

    kills = _interrupted(args(got), got, random.Random(2), t_ref, check)
    print(f"extract: uninterrupted {t_ref:.1f}s; {kills}")


def test_pretrain_killed_ten_times_equals_uninterrupted(inputs, tmp_path):
    import torch

    prep = tmp_path / "prep"
    _run(["prepare", inputs / "fields", "--out", prep, "--workers", "1", "--qa", "0", "tiling.patch_size=96"])

    def args(out):
        return ["pretrain", "--preset", "cpu", "--data", prep, "--out", out, "train.iterations=4",
                "train.batch_size=4", "train.save_every=1", "train.log_every=1", "crops.n_local=2",
                "crops.global_size=64", "crops.local_size=32", "data.num_workers=0", "head.out_dim=256",
                "head.hidden_dim=128", "head.bottleneck_dim=64"]

    ref, got = tmp_path / "ref", tmp_path / "got"
    t_ref = _run(args(ref))
    a = torch.load(ref / "checkpoint.pt", map_location="cpu", weights_only=False)
    repeated = []

    def its(run):
        return sorted(int(r["iteration"]) for r in _csv(run / "metrics.csv"))

    def check():
        b = torch.load(got / "checkpoint.pt", map_location="cpu", weights_only=False)
        assert a["iteration"] == b["iteration"] == 4
        for part in ("teacher", "student"):
            assert a[part].keys() == b[part].keys()
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after interrupted training"
        assert set(its(got)) == set(its(ref)) == set(range(1, 5))
        repeated.append(its(got) != its(ref))

    kills = _interrupted(args(got), got, random.Random(3), t_ref, check)
    print(f"pretrain: uninterrupted {t_ref:.1f}s; {kills}")
    assert not any(repeated), "metrics.csv repeats iterations after a resume"


def test_benchmark_killed_ten_times_equals_uninterrupted(tmp_path):
    cells = tmp_path / "cells"
    for i in range(16):
        cls = ("normal", "abnormal")[i % 2]
        (cells / cls).mkdir(parents=True, exist_ok=True)
        rgb, _ = smear(h=64, w=64, cells=((32, 32, 8 + 2 * (i % 2) + (i % 3)),),
                       color=((120, 80, 160), (160, 60, 90))[i % 2], seed=i)
        Image.fromarray(rgb).save(cells / cls / f"c{i:02d}.png")
    (tmp_path / "bench.yaml").write_text(
        "encoders: [handcrafted, 'random:vit_tiny_patch16_224']\n"
        "tasks:\n  - {name: cells, data: cells, label: label, mode: image, eval: probe, methods: [knn],"
        " folds: 2, seeds: [0], group_duplicates: false}\n")  # synthetic cells are near-duplicates by design
    ref, got = tmp_path / "ref", tmp_path / "got"

    def args(out):
        return ["benchmark", tmp_path / "bench.yaml", "--out", out]

    def check():
        assert _csv(got / "results.csv") == _csv(ref / "results.csv")
        assert (got / "results.md").read_text() == (ref / "results.md").read_text()

    t_ref = _run(args(ref))
    kills = _interrupted(args(got), got, random.Random(4), t_ref, check)
    print(f"benchmark: uninterrupted {t_ref:.1f}s; {kills}")
