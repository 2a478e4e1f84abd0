"""The input kinds and z-stack readers are registries: each kind is sniffed by discover (prepare's folder
walk and manifests) or by pretraining's shard reader, each z-stack reader claims its files, and what the
prepare steps used to ask by name is asked of the kind."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.sources.image_io import IMAGE_EXTENSIONS, SLIDE_EXTENSIONS
from cytofm.data.sources.inputs import discover
from cytofm.data.sources.kinds import INPUT_KINDS, input_suffixes, kind_of
from cytofm.data.sources.zstack.registry import ZSTACK_READERS
from cytofm.data.sources.zstack.stack import is_zstack_file, reader_of

from tests.helpers import defocus_stack, eval_field, write_ome_zstack


def _files(root):
    """One file of each prepared kind (discover reads names and headers, never pixels)."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(root / "field.png")
    (root / "scan.svs").write_bytes(b"not read by discover")
    (root / "stack.czi").write_bytes(b"not read by discover")
    write_ome_zstack(root / "planes.ome.tif", defocus_stack(eval_field(64, 64), 1, 3), tile=None)
    return {"field.png": "image", "scan.svs": "slide", "stack.czi": "zstack", "planes.ome.tif": "zstack"}


def test_every_prepared_input_kind_is_sniffed_by_discover(tmp_path):
    expected = _files(tmp_path / "in")
    items, skips, _ = discover([str(tmp_path / "in")], PrepareConfig())
    assert not skips and {it.path.name: it.kind for it in items} == expected
    prepared = {e.name for e in INPUT_KINDS.entries() if e.prepared}
    assert set(expected.values()) == prepared == {"image", "slide", "zstack"}
    assert input_suffixes() == IMAGE_EXTENSIONS | SLIDE_EXTENSIONS | {".czi"}
    assert kind_of(tmp_path / "in" / "notes.txt") is None


def test_the_tar_kind_is_read_by_pretraining_not_by_prepare(tmp_path):
    from cytofm.ssl.data import load_table

    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "a.png")
    with tarfile.open(tmp_path / "shard.tar", "w") as tf:
        tf.add(tmp_path / "a.png", arcname="0.png")
    table = load_table(tmp_path / "shard.tar")
    assert {f[1] for f in table.files} == {"tar"} and INPUT_KINDS.entry("tar").prepared is False
    tar = INPUT_KINDS.get("tar")
    fi, offset, size = (int(v) for v in table.refs[0])
    assert tar.members and tar.member_size(table.files[fi][0], offset, size) == (30, 20)
    assert kind_of(tmp_path / "shard.tar") is None  # prepare leaves shards alone


def test_the_kinds_answer_what_prepare_asked_by_name():
    facts = {k: (INPUT_KINDS.get(k).pyramid, INPUT_KINDS.get(k).planes, INPUT_KINDS.get(k).members)
             for k in INPUT_KINDS}
    assert facts == {"zstack": (False, True, False), "slide": (True, False, False),
                     "image": (False, False, False), "tar": (False, False, True)}


def test_a_manifest_kind_is_the_registry_name(tmp_path):
    from cytofm.data.prepare.run import run_prepare

    Image.fromarray(np.full((96, 96, 3), 230, np.uint8)).save(tmp_path / "f.png")
    cfg = build_config(PrepareConfig, "prepare", "default", ["foreground.method=none", "tiling.patch_size=32",
                                                             "output.qa_thumbnails=0"])
    res = run_prepare([str(tmp_path / "f.png")], tmp_path / "out", cfg, log=lambda *_: None)
    assert [r["kind"] for r in res.rows] == ["image"] and res.rows[0]["z"] == ""


def test_every_zstack_reader_claims_its_files(tmp_path):
    _files(tmp_path)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "flat.tif")
    assert reader_of(tmp_path / "stack.czi") == "czi" and reader_of(tmp_path / "planes.ome.tif") == "ome-tiff"
    assert not is_zstack_file(tmp_path / "flat.tif") and reader_of(tmp_path / "field.png") is None
    assert set(ZSTACK_READERS.names()) == {"czi", "ome-tiff"}
    assert [e.name for e in ZSTACK_READERS.entries() if e.default] == ["ome-tiff"]
    zstack = INPUT_KINDS.entry("zstack")
    for e in ZSTACK_READERS.entries():  # what a reader claims, the zstack kind looks at
        assert callable(ZSTACK_READERS.get(e.name).sniff) and set(e.suffixes) <= zstack.suffixes


@pytest.mark.parametrize("kind", ["image", "zstack"])
def test_open_source_opens_through_the_kind(tmp_path, kind):
    from cytofm.data.sources.source import open_source

    _files(tmp_path)
    path = tmp_path / ("field.png" if kind == "image" else "planes.ome.tif")
    src = open_source(path, kind)
    try:
        assert (src.width, src.height) == INPUT_KINDS.get(kind).whole_size(path)
    finally:
        src.close()
