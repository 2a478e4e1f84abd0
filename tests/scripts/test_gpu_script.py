"""The GPU retraining call, end to end on the CPU: a pool in parts merged, prepared with cells, 20
iterations, a checkpoint exported while it trains, the final weights split for the way back and whole
again when joined, named by the pool's record (second tier: about a minute); a pool with a part missing
refused before any work (default tier)."""

from __future__ import annotations

import json
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
                    "--limit", "6", "--quality", "chula_rbc12=90", "--split-mib", "0.25",
                    "--record", str(tmp_path / "parts" / "pretraining.csv.gz")],
                   cwd=ROOT, check=True)
    parts = sorted((tmp_path / "parts").glob("part-*"))
    assert len(parts) >= 2
    assert [len(list((p / ".parts").glob(f"*-of-{len(parts)}"))) for p in parts] == [1] * len(parts)
    assert (parts[0] / "pretraining.csv.gz").is_file()  # the record travels with part 1
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
        assert "progress/partial.pretraining.csv.gz" in t.getnames()  # a cut-short call's export has it too
    meta = json.loads((tmp_path / "run" / "cytofm_vit_small_patch16.json").read_text())
    assert meta["pretraining_record"] == "cytofm_vit_small_patch16.pretraining.csv.gz"
    assert meta["pretraining_data"]["datasets"] == {"bccd": 6, "chula_rbc12": 6, "cric": 6, "herlev": 6}
    from cytofm.models.zoo import create_encoder

    shutil.copyfile(tmp_path / "run" / "cytofm_vit_small_patch16.json", joined.with_suffix(".json"))
    enc = create_encoder(f"cytofm:{joined}")  # the joined parts load as an encoder
    assert enc.embed_dim == 384


def test_a_pool_with_a_part_missing_is_refused_before_any_work(tmp_path):
    pool = tmp_path / "pool"
    (pool / ".parts").mkdir(parents=True)
    (pool / ".parts" / "1-of-2").touch()  # part 2 never staged (or the machine was handed back)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PARTS": str(tmp_path / "no_parts"),
           "RUN": str(tmp_path / "run")}
    r = subprocess.run(["bash", "scripts/gpu_shipped_encoder.sh", str(pool)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert f"pool {pool}: 1 of 2 parts" in r.stderr and "stage every part again" in r.stderr
    assert not (tmp_path / "run").exists()  # nothing prepared or trained
