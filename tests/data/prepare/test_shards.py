"""Webdataset shards keep each sample whole when source ids contain dots (TCGA-style names)."""

import json
import re
import tarfile
from pathlib import Path

from PIL import Image

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare
from cytofm.data.prepare.shards import parse_shard_key, shard_key

from tests.helpers import smear

# webdataset's grouping rule (webdataset/tariterators.py, ``base_plus_ext``): the sample key is the member
# name up to the first dot of its base name, the rest is the field. Re-written here from its documentation.
_WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def wds_samples(tars: list[Path]) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for t in tars:
        with tarfile.open(t) as tf:
            for m in tf.getmembers():
                key, ext = _WDS_KEY.match(m.name).groups()
                samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


def test_key_round_trip_has_no_dots():
    for item in ("TCGA-AA-3968-01Z-00-DX1.0C8E7E85-3E5C-4A7A-9A0E-0F2C3B6A5E44", "a%2E.b", "plain_id",
                 "x__1_2"):
        k = shard_key(item, 448, 672)
        assert "." not in k
        assert parse_shard_key(k) == (item, 448, 672)


def test_dotted_ids_stay_one_sample_each(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    names = ["TCGA-AA-3968-01Z-00-DX1.0C8E7E85", "TCGA-AA-3968-01Z-00-DX1.9F21AB04"]
    for i, n in enumerate(names):
        Image.fromarray(smear(h=128, w=128, seed=i)[0]).save(src / f"{n}.png")
    cfg = build_config(PrepareConfig, overrides=["output.workers=1", "output.qa_thumbnails=0",
                                                 "tiling.patch_size=64", "foreground.min_fraction=0",
                                                 "output.materialize=webdataset"])
    res = run_prepare([str(src)], tmp_path / "out", cfg, log=lambda m: None)
    assert sorted(r["id"] for r in res.rows) == names  # ids keep their dots
    samples = wds_samples(sorted((tmp_path / "out" / "shards").glob("*.tar")))
    assert len(samples) == res.n_patches == 8  # not collapsed onto the part before the first dot
    for key, fields in samples.items():
        assert set(fields) == {"png", "json"}
        meta = json.loads(fields["json"])
        assert parse_shard_key(key) == (meta["id"], meta["x"], meta["y"])
    assert {json.loads(f["json"])["id"] for f in samples.values()} == set(names)
