"""The pretraining record: written deterministically, read back; the shipped encoder's covers its pool."""

import json

import pytest

from cytofm.data.provenance.pretraining_record import read_record, write_record
from cytofm.models.shipped import shipped_weights


def test_record_round_trip_is_byte_stable(tmp_path):
    rows = [{"dataset": "b", "relpath": "images/2.png", "sha256": "ab", "phash": "00ff00ff00ff00ff"},
            {"dataset": "a", "relpath": "images/1.png", "sha256": "cd", "phash": "ffffffffffffffff"}]
    write_record(rows, tmp_path / "r.csv.gz")
    write_record(rows[::-1], tmp_path / "s.csv.gz")
    assert (tmp_path / "r.csv.gz").read_bytes() == (tmp_path / "s.csv.gz").read_bytes()
    assert [r["relpath"] for r in read_record(tmp_path / "r.csv.gz")] == ["images/1.png", "images/2.png"]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        read_record(tmp_path / "bad.csv")


def test_shipped_encoder_names_its_record():
    st = shipped_weights()
    name = json.loads(st.with_suffix(".json").read_text())["pretraining_record"]
    rows = read_record(st.parent / name)
    from cytofm.data.provenance.split_files import DATASETS, part_of

    # exactly the pretraining parts of the shipped split: no evaluation image
    for d in DATASETS:
        assert sorted(r["relpath"] for r in rows if r["dataset"] == d) == part_of(d, "pretrain"), d
    meta = json.loads(st.with_suffix(".json").read_text())["pretraining_data"]
    assert meta["datasets"] == {"bccd": 219, "chula_rbc12": 431, "cric": 2121, "herlev": 549}


def test_attach_record_names_the_record_and_the_split_it_came_from(tmp_path):
    import hashlib

    from cytofm.data.provenance.pretraining_record import attach_record
    from cytofm.data.provenance.split_files import part_of, split_file

    names = part_of("herlev", "pretrain")[:2]
    rows = [{"dataset": "herlev", "relpath": n, "sha256": "a" * 64, "phash": "0" * 16} for n in names]
    rows.append({"dataset": "other", "relpath": "x.png", "sha256": "b" * 64, "phash": "1" * 16})
    rec = write_record(rows, tmp_path / "rec.csv.gz")
    js = tmp_path / "enc.json"
    js.write_text(json.dumps({"architecture": "vit_small_patch16_224"}))
    meta = attach_record(js, rec)
    assert meta == json.loads(js.read_text())
    assert meta["pretraining_record"] == "enc.pretraining.csv.gz"
    assert read_record(tmp_path / "enc.pretraining.csv.gz") == read_record(rec)
    assert meta["pretraining_data"]["datasets"] == {"herlev": 2, "other": 1}
    sha = hashlib.sha256(split_file("herlev").read_bytes()).hexdigest()
    assert meta["pretraining_data"]["splits"] == {"herlev": {"file": "cytofm/data/splits/herlev.csv",
                                                             "part": "pretrain", "sha256": sha}}
    with pytest.raises(ValueError, match="empty"):
        attach_record(js, write_record([], tmp_path / "empty.csv.gz"))
