"""Misuse at the command line: one line saying what is wrong, exit status 2, never a traceback."""

import h5py
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app

from tests.helpers import smear


@pytest.fixture
def cells(tmp_path):
    root = tmp_path / "cells"
    root.mkdir()
    for i in range(2):
        Image.fromarray(smear(h=40, w=40, cells=((20, 20, 8),), seed=i)[0]).save(root / f"c{i}.png")
    return root


def _extract(cells, out, *more):
    return CliRunner().invoke(app, ["extract", "--encoder", "random:vit_tiny_patch16_224", "--input",
                                    str(cells), "--mode", "image", "--out", str(out), "--workers", "0",
                                    *more])


def _clean_refusal(r, text):
    assert r.exit_code == 2, r.output
    assert text in r.output and "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


def test_batch_size_zero(cells, tmp_path):
    _clean_refusal(_extract(cells, tmp_path / "f", "--batch-size", "0"),
                   "--batch-size must be at least 1, not 0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_gpu(cells, tmp_path):
    _clean_refusal(_extract(cells, tmp_path / "f", "--device", "cuda"), "no CUDA GPU is available")
    r = CliRunner().invoke(app, ["heatmap", str(cells), "--encoder", "random:vit_tiny_patch16_224",
                                 "--device", "cuda", "--out", str(tmp_path / "maps")])
    _clean_refusal(r, "no CUDA GPU is available")


def test_out_is_an_existing_file(cells, tmp_path):
    f = tmp_path / "taken.txt"
    f.write_text("x")
    r = CliRunner().invoke(app, ["prepare", str(cells), "--out", str(f), "--workers", "1"])
    _clean_refusal(r, "is a file, not a folder")
    _clean_refusal(_extract(cells, f), "is a file, not a folder")
    assert f.read_text() == "x"


def test_summary_counts_instances_of_written_items_only_and_paths_are_relative(cells, tmp_path, monkeypatch):
    (cells / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    monkeypatch.chdir(tmp_path)  # paths typed relative, as a user would
    r = CliRunner().invoke(app, ["extract", "--encoder", "random:vit_tiny_patch16_224", "--input", "cells",
                                 "--mode", "tiles", "--out", "f", "--workers", "0"])
    assert r.exit_code == 0, r.output
    n = sum(len(h5py.File(p)["coords"]) for p in (tmp_path / "f" / "features").glob("*.h5"))
    assert f"extracted 2 item(s) ({n} instances" in " ".join(r.output.split())
    shared = [tmp_path / "f" / n for n in ("manifest.csv", "skipped.csv", "config.yaml", "store.json")]
    shared += [tmp_path / "f" / "prepared" / n for n in ("manifest.csv", "skipped.csv", "config.yaml")]
    for p in shared:
        assert str(tmp_path) not in p.read_text(), p
    for p in (tmp_path / "f").rglob("*.h5"):
        with h5py.File(p) as h:
            assert str(tmp_path) not in str(h.attrs.get("source_path")), p
    assert "../cells/broken.png" in (tmp_path / "f" / "prepared" / "skipped.csv").read_text()
