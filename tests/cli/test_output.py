"""Output read in a log file or a script: plain periodic progress lines (rate, ETA, a heartbeat while a step
holds still), tables never wrapped, messages through logging with -q/-v."""

import io
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli import common
from cytofm.cli.common import PlainProgress
from cytofm.cli.main import app

from tests.helpers import smear_folder

runner = CliRunner()


def test_plain_progress_lines_heartbeat_and_done(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", 0)
    buf = io.StringIO()
    with PlainProgress(stream=buf, interval=0.2) as p:
        t = p.add_task("extract demo", total=10, rate="")
        p.add_task("nothing left", total=0, rate="")  # every item already done: silent
        p.update(t, advance=3, rate="5.0 img/s")
        time.sleep(0.7)  # no update: the heartbeat still reports, with the last rate and an ETA
        p.update(t, advance=7)
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("progress extract demo: started, 10 to do")
    beats = [ln for ln in lines if "extract demo: 3/10 (30%), 5.0 img/s, elapsed" in ln]
    assert beats and all("eta" in ln for ln in beats)
    assert (lines[-1].split(" progress ")[1].startswith("extract demo: 10/10 (100%)")
            and lines[-1].endswith("done"))
    assert not any("nothing left" in ln for ln in lines) and "\r" not in buf.getvalue()


def test_progress_interval_setting_never_crashes(monkeypatch):
    monkeypatch.setenv("CYTOFM_PROGRESS_SECONDS", "abc")
    assert PlainProgress().interval == 30.0
    monkeypatch.setenv("CYTOFM_PROGRESS_SECONDS", "0")
    assert PlainProgress().interval == 0.1  # never a busy loop


def test_quiet_hides_progress(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", -1)
    buf = io.StringIO()
    with PlainProgress(stream=buf, interval=0.01) as p:
        p.update(p.add_task("x", total=2), advance=2)
    assert buf.getvalue() == ""


def _cells(root):
    rng = np.random.default_rng(0)
    for c, colour in (("pink", (215, 150, 170)), ("blue", (120, 160, 190))):
        (root / c).mkdir(parents=True)
        for i in range(6):
            tex = np.kron(rng.uniform(0.6, 1.0, (4, 4)), np.ones((8, 8)))[..., None]
            Image.fromarray((tex * np.array(colour)).astype(np.uint8)).save(root / c / f"{i}.png")


def test_tables_whole_and_messages_logged_and_quiet(tmp_path):
    _cells(tmp_path / "cells")
    r = runner.invoke(app, ["extract", "--encoder", "handcrafted", "--input", str(tmp_path / "cells"),
                            "--mode", "image", "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    assert "progress extract handcrafted: started, 12 to do" in r.output and "━" not in r.output
    args = ["probe", "--features", str(tmp_path / "f"), "--label", "label", "--out", str(tmp_path / "p"),
            "--folds", "9", "--seeds", "0", "--methods", "knn", "knn_k=3"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    table = [ln for ln in r.stdout.splitlines() if ln.startswith("| knn |")]
    assert len(table) == 1 and len(table[0]) > 120  # one row, at full width: never wrapped at 80 columns
    # messages go through logging: timestamped, with their level, in a log file
    assert " WARNING class 'blue' has only 6 items: using 6 folds instead of 9" in r.stderr
    quiet = runner.invoke(app, ["-q", *args])
    assert quiet.exit_code == 0 and "progress" not in quiet.stderr and "using 6 folds" in quiet.stderr
    assert "| knn |" in quiet.stdout  # the result itself is never hidden


def test_pretrain_into_a_log_file_shows_periodic_progress(tmp_path):
    """`cytofm pretrain ... > log.txt 2>&1`, as under nohup or a scheduler."""
    smear_folder(tmp_path)
    tiny = ["model.arch=vit_tiny_patch16_224", "head.out_dim=64", "head.hidden_dim=32",
            "head.bottleneck_dim=16", "crops.global_size=32", "crops.local_size=16", "crops.n_local=2",
            "train.batch_size=4", "data.num_workers=0", "train.iterations=30", "train.log_every=10",
            "runtime.precision=fp32"]
    log = tmp_path / "log.txt"
    env = dict(os.environ, CYTOFM_PROGRESS_SECONDS="0.3")
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "cytofm", "pretrain", "--data", str(tmp_path), "--out",
                              str(tmp_path / "run"), *tiny], stdout=f, stderr=subprocess.STDOUT, env=env,
                             timeout=600)
    text = log.read_text()
    assert rc == 0, text
    assert "progress pretrain: started, 30 to do" in text
    mid = [ln for ln in text.splitlines() if "progress pretrain:" in ln and "/30 (" in ln and "eta" in ln]
    assert mid, text  # periodic lines with the count, the rate and an ETA
    assert "progress pretrain: 30/30 (100%)" in text and "\r" not in text and "━" not in text
    assert all(len(ln) < 400 for ln in text.splitlines())
