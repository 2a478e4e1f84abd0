"""A store holds one encoder's features of the current inputs: locked, identified, keyed per item."""

import hashlib
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare
from cytofm.features.config import ExtractConfig
from cytofm.features.extract import run_extract
from cytofm.features.store import StoreError, load_store, read_item
from cytofm.models.zoo import create_encoder
from cytofm.utils.lock import FolderLock, FolderLocked

from tests.helpers import smear


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def enc():
    return create_encoder("random:vit_tiny_patch16_224")


@pytest.fixture(scope="module")
def enc2():
    return create_encoder("handcrafted")


def _cells(root, n=3):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(smear(h=40, w=40, cells=((20, 20, 6 + 3 * i),), seed=i)[0]).save(root / f"c{i}.png")
    return root


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


HOLD = ("import sys, time; sys.path.insert(0, {src!r}); from cytofm.utils.lock import FolderLock; "
        "l = FolderLock({out!r}, what='extract'); l.acquire(); print('locked', flush=True); time.sleep(120)")


def test_second_writer_refused_with_holder_then_stale_lock_taken_over(tmp_path, enc):
    cells, out = _cells(tmp_path / "cells"), tmp_path / "f"
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(src=os.path.abspath(src), out=str(out))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLocked, match=rf"pid {holder.pid} on .*started 20"):
            run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0),
                        log=quiet)
        r = CliRunner().invoke(app, ["extract", "--encoder", "random:vit_tiny_patch16_224", "--input",
                                     str(cells), "--mode", "image", "--out", str(out)])
        assert r.exit_code == 2 and f"pid {holder.pid}" in r.output and "Traceback" not in r.output
        assert not (out / "features").exists() or not list((out / "features").glob("*.h5"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    notes = []
    # the dead holder's lock is taken over
    r = run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0),
                    log=notes.append)
    assert r["extracted"] == 3
    assert any(f"taking over the lock left by pid {holder.pid}" in n for n in notes)
    with FolderLock(out):  # released after the run
        pass


@pytest.mark.slow  # two real processes importing torch: ~30 s on 2 cores
def test_two_concurrent_extracts_one_refused(tmp_path):
    """Two real `cytofm extract` processes with different encoders into one folder: one wins, one is
    refused."""
    cells, out = _cells(tmp_path / "cells", 12), tmp_path / "f"
    cmd = [sys.executable, "-m", "cytofm", "extract", "--input", str(cells), "--mode", "image", "--out",
           str(out), "--workers", "0", "--encoder"]
    env = dict(os.environ,
               PYTHONPATH=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src")))
    procs = [subprocess.Popen(cmd + [e], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for e in ("random:vit_tiny_patch16_224", "handcrafted")]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert ("another cytofm extract is writing here" in loser or "holds features of" in loser), loser
    assert "Traceback" not in loser
    rows = load_store(out)
    assert len(rows) == 12 and len({read_item(r["h5"])[2]["weights_hash"] for r in rows}) == 1


def test_other_encoder_refused_and_mixed_store_refused_by_probe(tmp_path, enc, enc2):
    cells, out = _cells(tmp_path / "cells"), tmp_path / "f"
    run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0), log=quiet)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "features").glob("*.h5")}
    with pytest.raises(StoreError, match="holds features of random .* this run would add handcrafted"):
        run_extract(enc2, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0), log=quiet)
    with pytest.raises(StoreError, match="holds features of random .*TTA"):
        run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), tta=True, workers=0),
                    log=quiet)
    # nothing touched
    assert {p.name: p.stat().st_mtime_ns for p in (out / "features").glob("*.h5")} == before
    # a store mixed by hand (or by an older cytofm): probe and mil refuse it with a message
    with h5py.File(out / "features" / "c1.h5", "r+") as f:
        f.attrs["weights_hash"] = "0123456789abcdef"
    with pytest.raises(StoreError, match=r"mixes features of several encoders: 2 item\(s\) from random"):
        load_store(out)
    (out / "store.json").unlink()  # judged by the items alone
    with pytest.raises(StoreError, match="mixes features"):
        load_store(out)
    with pytest.raises(StoreError, match="mixes features"):
        run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0), log=quiet)
    import csv
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) + ["label"])
        w.writeheader()
        w.writerows([{**r, "label": "ab"[i % 2]} for i, r in enumerate(rows)])
    for cmd in ("probe", "mil"):
        r = CliRunner().invoke(app, [cmd, "--features", str(out), "--label", "label", "--out",
                                     str(tmp_path / cmd)])
        assert (r.exit_code == 2 and "mixes features of several encoders" in r.output
                and "Traceback" not in r.output)


def test_reprepared_with_another_patch_size_is_extracted_again(tmp_path, enc):
    fields = tmp_path / "fields"
    fields.mkdir()
    for i in range(2):
        Image.fromarray(smear(h=240, w=320, seed=i)[0]).save(fields / f"f{i}.png")
    prep, out = tmp_path / "prep", tmp_path / "f"
    def cfg(ps):
        return build_config(PrepareConfig, overrides=["output.workers=1", "output.qa_thumbnails=0",
                                                      f"tiling.patch_size={ps}"])
    run_prepare([str(fields)], prep, cfg(96), log=lambda m: None)
    r = run_extract(enc, ExtractConfig(input=str(prep), mode="tiles", out=str(out), workers=0), log=quiet)
    assert r["extracted"] == 2 and r["reused"] == 0
    again = run_extract(enc, ExtractConfig(input=str(prep), mode="tiles", out=str(out), workers=0), log=quiet)
    assert again["reused"] == 2 and again["extracted"] == 0
    run_prepare([str(fields)], prep, cfg(192), log=lambda m: None)
    r = run_extract(enc, ExtractConfig(input=str(prep), mode="tiles", out=str(out), workers=0), log=quiet)
    assert r["reused"] == 0 and r["extracted"] == 2
    for row in load_store(out):
        f, c, a = read_item(row["h5"])
        with h5py.File(prep / "coords" / f"{row['id']}.h5") as p:
            assert np.array_equal(c, p["coords"][:]) and a["patch_size"] == 192 and len(f) == len(c)


def test_replaced_image_with_same_name_size_and_mtime_is_extracted_again(tmp_path, enc):
    cells, out = _cells(tmp_path / "cells"), tmp_path / "f"
    run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0), log=quiet)
    p = cells / "c1.png"
    st = p.stat()
    old = read_item(out / "features" / "c1.h5")[0]
    new = smear(h=40, w=40, cells=((10, 30, 9),), color=(30, 140, 60), seed=7)[0]
    Image.fromarray(new).save(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p style: same mtime
    r = run_extract(enc, ExtractConfig(input=str(cells), mode="image", out=str(out), workers=0), log=quiet)
    assert r["extracted"] == 1 and r["reused"] == 2
    f, _, a = read_item(out / "features" / "c1.h5")
    assert a["source_sha256"] == _sha(p) and not np.allclose(f, old)
    # a prepared dataset whose source changed afterwards: its coords are stale, the item is refused
    prep = tmp_path / "prep"
    run_prepare([str(cells)], prep, build_config(PrepareConfig, overrides=[
        "output.workers=1", "output.qa_thumbnails=0", "tiling.patch_size=16"]), log=lambda m: None)
    Image.fromarray(smear(h=40, w=40, seed=9)[0]).save(cells / "c2.png")
    notes = []
    r = run_extract(enc, ExtractConfig(input=str(prep), mode="tiles", out=str(tmp_path / "g"), workers=0),
                    log=notes.append)
    assert any("c2.png: the file changed since `cytofm prepare`" in n for n in notes)
    assert sorted(x["id"] for x in load_store(tmp_path / "g")) == ["c0", "c1"]


def test_ids_never_shift_when_a_clashing_file_is_added(tmp_path, enc):
    root = tmp_path / "cells"
    root.mkdir()
    names = ["a b.jpg", "a_b.jpg", "a_b.png"]
    for i, n in enumerate(names):
        Image.fromarray(smear(h=40, w=40, cells=((20, 20, 5 + 4 * i),), seed=i)[0]).save(root / n)
    out = tmp_path / "f"
    run_extract(enc, ExtractConfig(input=str(root), mode="image", out=str(out), workers=0), log=quiet)
    first = {r["id"]: os.path.basename(r["path"]) for r in load_store(out)}
    assert len(first) == 3 and first["a_b"] == "a_b.jpg"
    Image.fromarray(smear(h=40, w=40, cells=((20, 20, 17),), seed=5)[0]).save(root / "a+b.jpg")
    r = run_extract(enc, ExtractConfig(input=str(root), mode="image", out=str(out), workers=0), log=quiet)
    assert r["reused"] == 3 and r["extracted"] == 1
    rows = load_store(out)
    after = {x["id"]: os.path.basename(x["path"]) for x in rows}
    assert {k: after[k] for k in first} == first  # nobody's id moved
    for x in rows:  # and every item holds its own file's features
        assert read_item(x["h5"])[2]["source_sha256"] == _sha(x["path"])
    import csv
    clashes = list(csv.DictReader(open(out / "id_collisions.csv")))
    assert len(clashes) == 4 and {c["shared_name"] for c in clashes} == {"a_b"}
    # a fresh store gets the same ids for the same files: derived from each file's own name
    run_extract(enc, ExtractConfig(input=str(root), mode="image", out=str(tmp_path / "g"), workers=0),
                log=quiet)
    assert {x["id"]: os.path.basename(x["path"]) for x in load_store(tmp_path / "g")} == after
