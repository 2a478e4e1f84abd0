"""The GPU retraining call, end to end on the CPU: a pool in parts merged, prepared with cells, 20
iterations, a checkpoint exported while it trains, the final weights split for the way back and whole
again when joined (second tier: about two minutes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_call_on_the_cpu_with_20_iterations(tmp_path):
    if not (SHARED_DATA / "chula_rbc12").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    py = sys.executable
    subprocess.run([py, "scripts/build_pretraining_pool.py", str(SHARED_DATA), str(tmp_path / "parts"),
                    "--limit", "6", "--quality", "chula_rbc12=90", "--split-mib", "0.25"],
                   cwd=ROOT, check=True)
    parts = sorted((tmp_path / "parts").glob("part-*"))
    assert len(parts) >= 2
    assert [len(list((p / ".parts").glob(f"*-of-{len(parts)}"))) for p in parts] == [1] * len(parts)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RUN": str(tmp_path / "run"),
           "PARTS": str(tmp_path / "parts"),
           "PYTHON": py, "CYTOFM": f"{py} -m cytofm", "ITERS": "20", "BS": "4", "WORKERS": "1",
           "SAVE_EVERY": "4", "EXPORT_EVERY": "15", "TOTAL": "3000", "SKIP_MEASURE": "1", "NO_WHL": "1"}
    r = subprocess.run(["bash", "scripts/gpu_shipped_encoder.sh", str(tmp_path / "pool")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout
    assert "bccd_cells: prepared" in log and "chula_rbc12_cells: prepared" in log
    assert "[exporter" in log  # a checkpoint exported while training ran
    assert "done: iteration 20" in log
    out = tmp_path / "out"
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("weights.part-*"))))
    assert joined.read_bytes() == (tmp_path / "run" / "cytofm_vit_small_patch16.safetensors").read_bytes()
    args = (tmp_path / "run" / "prep" / "pretrain_args.txt").read_text().split("\n")
    assert "data.cells=[false,false,false,false,false,false,false,false,true,true]" in args
    with tarfile.open(out / "small.tar.gz") as t:
        assert "small/main/metrics.csv" in t.getnames()
    with tarfile.open(out / "progress.tar.gz") as t:
        assert "progress/cytofm_vit_small_patch16.json" in t.getnames()
    from cytofm.models.zoo import create_encoder

    shutil.copyfile(tmp_path / "run" / "cytofm_vit_small_patch16.json", joined.with_suffix(".json"))
    enc = create_encoder(f"cytofm:{joined}")  # the joined parts load as an encoder
    assert enc.embed_dim == 384
