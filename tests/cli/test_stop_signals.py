"""A scheduler's stop: `pretrain` killed with SIGTERM (SLURM at a time limit) writes a checkpoint at the
iteration it reached and says where; resumed, it ends exactly where an uninterrupted run ends. Other
commands keep their finished items on SIGTERM as on Ctrl-C."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import smear_folder

SRC = str(Path(__file__).resolve().parents[2] / "src")
# one interpreter start each
ENV = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="2", CYTOFM_NO_REEXEC="1")
TINY = ["model.arch=vit_tiny_patch16_224", "head.out_dim=64", "head.hidden_dim=32", "head.bottleneck_dim=16",
        "crops.global_size=32", "crops.local_size=16", "crops.n_local=2", "train.batch_size=4",
        "data.num_workers=0", "train.iterations=20", "train.log_every=1", "train.save_every=1000",
        "runtime.precision=fp32", "model.drop_path=0.1"]


def _pretrain(data, out):
    return [sys.executable, "-m", "cytofm", "pretrain", "--data", str(data), "--out", str(out), *TINY]


def _iterations(run: Path) -> int:
    try:
        with open(run / "metrics.csv") as f:
            return len(list(csv.DictReader(f)))
    except (FileNotFoundError, csv.Error):
        return 0


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    return smear_folder(tmp_path_factory.mktemp("sig"))


@pytest.mark.parametrize("sig", ["SIGTERM"])
def test_pretrain_stopped_by_a_signal_checkpoints_and_resumes_exactly(fields, tmp_path, sig):
    ref, got = tmp_path / "ref", tmp_path / "got"
    subprocess.run(_pretrain(fields, ref), env=ENV, capture_output=True, check=True, timeout=600)
    p = subprocess.Popen(_pretrain(fields, got), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    t0 = time.monotonic()
    while _iterations(got) < 3 and p.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.05)
    p.send_signal(getattr(signal, sig))
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 128 + getattr(signal, sig), text[-3000:]
    ck = torch.load(got / "checkpoint.pt", map_location="cpu", weights_only=False)
    n = int(ck["iteration"])
    assert 3 <= n < 20, text[-2000:]  # with save_every 1000, only the stop can have written it
    assert f"{sig}: stopped at iteration {n} of 20" in " ".join(text.split()) and "Traceback" not in text
    assert f"stopped at {n} of 20 ({sig})" in text  # the progress line closed where the run stopped
    r = subprocess.run(_pretrain(fields, got), env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resumed from" in r.stderr, r.stderr[-2000:]
    a = torch.load(ref / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(got / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert a["iteration"] == b["iteration"] == 20
    for part in ("student", "teacher"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after the {sig} stop and resume"
