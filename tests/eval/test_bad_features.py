"""A feature store with a damaged item is refused before any training, the file and the item named;
`extract` says it rebuilds an unreadable item and does."""

import re

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app

runner = CliRunner()


def plain(s):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", s).split())


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    for c, colour in (("pink", (215, 150, 170)), ("blue", (120, 160, 190))):
        (tmp_path / "cells" / c).mkdir(parents=True)
        for i in range(6):
            tex = np.kron(rng.uniform(0.6, 1.0, (4, 4)), np.ones((8, 8)))[..., None]
            Image.fromarray((tex * np.array(colour)).astype(np.uint8)).save(
                tmp_path / "cells" / c / f"{i}.png")
    args = ["extract", "--encoder", "handcrafted", "--input", str(tmp_path / "cells"), "--mode", "image",
            "--out", str(tmp_path / "f")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return tmp_path / "f", args


def _probe(store, out):
    return runner.invoke(app, ["probe", "--features", str(store), "--label", "label", "--out", str(out),
                               "--folds", "3", "--seeds", "0", "--methods", "linear"])


def test_non_finite_features_are_refused_naming_file_and_item(store, tmp_path):
    root, _ = store
    h5 = sorted((root / "features").glob("*.h5"))[3]
    with h5py.File(h5, "r+") as f:
        x = f["features"][:]
        x[0, 2] = np.nan
        f["features"][...] = x
    r = _probe(root, tmp_path / "p")
    assert r.exit_code == 2, r.output
    assert (f"{h5}: item '{h5.stem}' has non-finite features (NaN/inf) in 1 of its 1 instance(s)"
            in plain(r.output))
    assert not (tmp_path / "p" / "results.csv").exists() and "Traceback" not in r.output


def test_truncated_feature_file_is_named_and_extract_rebuilds_it(store, tmp_path):
    root, args = store
    h5 = sorted((root / "features").glob("*.h5"))[0]
    data = h5.read_bytes()
    h5.write_bytes(data[: len(data) // 2])
    r = _probe(root, tmp_path / "p")
    assert (r.exit_code == 2
            and f"{h5}: unreadable feature file of item '{h5.stem}'" in plain(r.output)), r.output
    r = runner.invoke(app, args)
    assert (r.exit_code == 0
            and f"features/{h5.name} is unreadable (truncated or damaged)" in plain(r.output)), r.output
    assert "extracted 1 item(s)" in plain(r.output)
    assert _probe(root, tmp_path / "p").exit_code == 0
