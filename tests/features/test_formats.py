"""Round trips through the layouts of TRIDENT, CLAM and STAMP: cytofm store -> tool layout -> a reader
written here from the tool's documented format -> back to a cytofm store (features, coords, geometry and
labels equal).

None of the three tools is on PyPI under its name (the PyPI packages ``trident``, ``stamp`` and ``clam``
are unrelated projects), so each reader below re-states, from reading the tool's source, what the tool
itself reads:

- TRIDENT (mahmoodlab/TRIDENT): ``features_<encoder>/<slide>.h5``; datasets ``features``, ``coords``; on
  ``coords``: ``patch_size`` (pixels at the target magnification), ``patch_size_level0``,
  ``level0_magnification``, ``target_magnification``, ``overlap``, ``name`` (``WSI.extract_tissue_coords``
  writes them, ``patch_size_level0 = patch_size * level0_magnification // target_magnification``); slide
  encoders and ``visualize_heatmap`` read the field of view from ``patch_size_level0``.
- CLAM (mahmoodlab/CLAM): ``h5_files/<slide_id>.h5`` (``features``, ``coords``), ``pt_files/<slide_id>.pt``
  (``torch.save`` of the feature tensor; ``Generic_MIL_Dataset`` loads it), a dataset CSV with
  ``case_id``, ``slide_id``, ``label``; ``Whole_Slide_Bag_FP`` reads a patch as
  ``read_region(coord, patch_level, (patch_size, patch_size))`` and ``custom_downsample`` scales it down.
- STAMP (KatherLab/STAMP): ``<extractor>/<slide>.h5`` with ``feats`` and ``coords`` in micrometres and
  attributes ``unit`` = "um", ``tile_size_um``, ``tile_size_px``, ``feat_type`` = "tile", ``extractor``
  (``stamp.preprocessing.extract_``; ``stamp.modeling.data.get_coords`` reads ``tile_size_um`` when
  ``unit`` is "um"); a slide table with ``PATIENT``, ``FILENAME`` and a clinical table keyed by ``PATIENT``.
"""

import csv
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.run import run_prepare
from cytofm.features.config import ExtractConfig
from cytofm.features.extract import run_extract
from cytofm.features.formats.convert import export_store, import_folder
from cytofm.features.formats.registry import FEATURE_FORMATS
from cytofm.features.formats.slides import patient_of, read_store
from cytofm.models.zoo import create_encoder

from tests.helpers import smear

runner = CliRunner()
MPP, TARGET = 0.25, 0.5  # 40x slides cut at 20x: the field of view is twice the patch's pixels


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmt")
    src = root / "in"
    for label, seed in (("benign", 0), ("malignant", 1)):
        (src / label).mkdir(parents=True)
        Image.fromarray(smear(h=256, w=320, seed=seed)[0]).save(src / label / f"TCGA-{seed}.DX1.png")
    cfg = build_config(PrepareConfig, overrides=[
        "output.workers=1", "output.qa_thumbnails=0", "tiling.patch_size=64", "tiling.stride=48",
        "foreground.min_fraction=0", f"resolution.mpp={MPP}", f"resolution.target_mpp={TARGET}",
        "metadata.labels_from_folders=true"])
    run_prepare([str(src)], root / "prepared", cfg, log=lambda m: None)
    return root


@pytest.fixture(scope="module")
def store(prepared):
    out = prepared / "store"
    run_extract(create_encoder("handcrafted"),
                ExtractConfig(input=str(prepared / "prepared"), mode="tiles", out=str(out), batch_size=32,
                              workers=0, device="cpu"), log=lambda m: None)
    return out


def _same(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    return all((isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_store_coords_carry_the_trident_and_clam_geometry(prepared, store):
    rows = {r["id"]: r for r in _csv(prepared / "prepared" / "manifest.csv")}
    for s in read_store(store):
        with h5py.File(store / "features" / f"{s.id}.h5") as f:
            a = dict(f["coords"].attrs)
        size0 = int(rows[s.id]["patch_size_level0"])
        assert size0 == 128 and int(rows[s.id]["patch_size"]) == 64
        assert a["patch_size_level0"] == size0 and a["patch_size"] == 64 and a["patch_level"] == 0
        assert a["level0_magnification"] == 40.0 and a["target_magnification"] == 20.0
        assert a["custom_downsample"] == 2.0 and a["overlap"] == 16  # stride 48 of 64 px at 20x
        assert (a["patch_size_level0"]
                == a["patch_size"] * a["level0_magnification"] // a["target_magnification"])


def test_image_mode_has_a_field_of_view(prepared, tmp_path):
    out = tmp_path / "img"
    run_extract(create_encoder("handcrafted"),
                ExtractConfig(input=str(prepared / "prepared"), mode="image", out=str(out), workers=0,
                              device="cpu"), log=lambda m: None)
    for h5 in (out / "features").glob("*.h5"):
        with h5py.File(h5) as f:
            a = dict(f["coords"].attrs)
        assert a["patch_size_level0"] == 320 and a["patch_size"] == 320  # the whole 320x256 field, not 0
        assert (a["level0_magnification"] == a["target_magnification"] == 40.0
                and a["custom_downsample"] == 1.0)


# --- readers written from each tool's format ----------------------------------------------------------
def trident_reader(job: Path) -> dict:
    (folder,) = [p for p in job.iterdir() if p.name.startswith("features_")]
    out = {}
    for h5 in folder.glob("*.h5"):
        with h5py.File(h5, "r") as f:
            feats, coords, attrs = f["features"][:], f["coords"][:], dict(f["coords"].attrs)
        assert {"patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "overlap",
                "name"} <= set(attrs)
        assert attrs["patch_size_level0"] == attrs["patch_size"] * attrs["level0_magnification"] // \
            attrs["target_magnification"]
        out[h5.stem] = {"features": feats, "coords": coords, "fov0": int(attrs["patch_size_level0"]),
                        "label": None}
    return out


def clam_reader(root: Path) -> dict:
    rows = _csv(root / "dataset.csv")
    assert list(rows[0])[:3] == ["case_id", "slide_id", "label"]
    out = {}
    for r in rows:
        feats = torch.load(root / "pt_files" / f"{r['slide_id']}.pt", weights_only=True)  # a plain tensor
        with h5py.File(root / "h5_files" / f"{r['slide_id']}.h5", "r") as f:
            coords, attrs = f["coords"][:], dict(f["coords"].attrs)
            assert np.array_equal(f["features"][:], feats.numpy())
        level, size = int(attrs["patch_level"]), int(attrs["patch_size"])
        assert level == 0  # read_region(coord, 0, (patch_size, patch_size)): patch_size is the level-0 side
        target = int(size / attrs["custom_downsample"])
        out[r["slide_id"]] = {"features": feats.numpy(), "coords": coords, "fov0": size, "target": target,
                              "label": r["label"]}
    return out


def stamp_reader(root: Path) -> dict:
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    patients = {r["PATIENT"]: r for r in _csv(folder / "clini_table.csv")}
    out = {}
    for r in _csv(folder / "slide_table.csv"):
        with h5py.File(folder / r["FILENAME"], "r") as f:
            feats, coords_um, attrs = f["feats"][:], f["coords"][:], dict(f.attrs)
        assert attrs["unit"] == "um" and attrs["feat_type"] == "tile" and attrs["extractor"]
        tile_um, tile_px = float(attrs["tile_size_um"]), int(attrs["tile_size_px"])
        assert tile_um / tile_px == pytest.approx(TARGET)  # STAMP's CoordsInfo.mpp: the tiles' resolution
        out[Path(r["FILENAME"]).stem] = {
            "features": feats, "coords": np.rint(coords_um / MPP).astype(np.int64),
            "fov0": round(tile_um / MPP), "label": patients[r["PATIENT"]]["label"]}
    return out


READERS = {"trident": trident_reader, "clam": clam_reader, "stamp": stamp_reader}


def test_every_feature_format_is_checked_and_offered_by_convert():
    import click
    import typer

    assert tuple(READERS) == FEATURE_FORMATS.names()  # each registered format has its round trip below
    group = typer.main.get_command(app)
    params = {p.name: p.help for p in group.get_command(click.Context(group), "convert").params}
    for e in FEATURE_FORMATS.entries():
        assert f"{e.name}: {e.description}" in params["to"] and e.name in params["from_"]
        fmt = FEATURE_FORMATS.get(e.name)
        assert callable(fmt.read) and callable(fmt.write)
    with pytest.raises(ValueError, match="unknown tool 'qupath'; one of: " + ", ".join(FEATURE_FORMATS)):
        export_store("anywhere", "qupath", "out")


@pytest.mark.parametrize("tool", FEATURE_FORMATS.names())
def test_round_trip(store, tmp_path, tool):
    original = {s.id: s for s in read_store(store)}
    export_store(store, tool, tmp_path / tool)
    seen = READERS[tool](tmp_path / tool)
    assert set(seen) == set(original)
    for sid, s in original.items():
        v = seen[sid]
        assert np.array_equal(v["features"], s.features) and np.array_equal(v["coords"], s.coords)
        assert v["fov0"] == 128  # the level-0 field of view, not the 64 px the encoder saw
        if v["label"] is not None:
            assert v["label"] == s.meta["label"]
        if "target" in v:
            assert v["target"] == 64
    back_store, n = import_folder(tmp_path / tool, tool, tmp_path / "back")
    assert n == len(original)
    for b in read_store(tmp_path / "back"):
        s = original[b.id]
        assert np.array_equal(b.features, s.features) and np.array_equal(b.coords, s.coords)
        assert _same(b.geometry, s.geometry), (b.geometry, s.geometry)
        assert b.meta == s.meta
        for k in ("encoder", "encoder_spec", "weights_hash", "mpp", "source_path", "mode"):
            assert b.attrs[k] == s.attrs[k], k


def test_foreign_clam_folder_with_patch_level_and_csv(tmp_path):
    """A folder as CLAM leaves it: coords at patch_level 1 (downsample 2), no magnification, a dataset CSV."""
    root = tmp_path / "clam"
    (root / "h5_files").mkdir(parents=True)
    feats = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    with h5py.File(root / "h5_files" / "slide_1.h5", "w") as f:
        f["features"] = feats
        c = f.create_dataset("coords", data=np.array([[0, 0], [512, 0], [1024, 0]], np.int32))
        c.attrs.update({"patch_size": 256, "patch_level": 1, "downsample": np.array([2.0, 2.0])})
    (root / "tumor_vs_normal.csv").write_text("case_id,slide_id,label\npatient_0,slide_1.svs,tumor\n")
    manifest, n = import_folder(root, "clam", tmp_path / "store", mpp=0.25)
    (s,) = read_store(tmp_path / "store")
    assert s.meta == {"case_id": "patient_0", "label": "tumor"}
    assert s.geometry["patch_size_level0"] == 512 and s.geometry["level0_magnification"] == 40.0
    assert np.array_equal(s.features, feats)


def test_pt_files_are_read_without_running_code(tmp_path, monkeypatch):
    import pathlib

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (tmp_path / "pwned",))

    monkeypatch.delenv("CYTOFM_TRUST_WEIGHTS", raising=False)
    (tmp_path / "clam" / "pt_files").mkdir(parents=True)
    torch.save({"feats": Payload()}, tmp_path / "clam" / "pt_files" / "s.pt")
    r = runner.invoke(app, ["convert", str(tmp_path / "clam"), "--from", "clam", "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "refused to load" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "pwned").exists()


def test_cli_errors_are_one_line(store, tmp_path):
    r = runner.invoke(app, ["convert", str(store), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "exactly one of --to" in r.output
    r = runner.invoke(app, ["convert", str(store), "--to", "qupath", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown tool 'qupath'" in r.output
    r = runner.invoke(app, ["convert", str(tmp_path), "--to", "clam", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not a feature store" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["convert", str(store), "--to", "stamp", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["convert", str(tmp_path / "s"), "--from", "stamp", "--out", str(store)])
    assert r.exit_code == 2 and "already holds a feature store" in r.output


def test_stamp_needs_a_resolution(tmp_path):
    """Plain images without mpp: STAMP's micrometres need --mpp, and the message says so."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smear(h=64, w=64)[0]).save(src / "a.png")
    run_extract(create_encoder("handcrafted"),
                ExtractConfig(input=str(src), mode="image", out=str(tmp_path / "st"), workers=0,
                              device="cpu"), log=lambda m: None)
    r = runner.invoke(app, ["convert", str(tmp_path / "st"), "--to", "stamp", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "give --mpp" in r.output and "\n" not in r.output.strip()
    r = runner.invoke(app, ["convert", str(tmp_path / "st"), "--to", "stamp", "--out", str(tmp_path / "o"),
                            "--mpp", "0.5"])
    assert r.exit_code == 0, r.output
    with h5py.File(next((tmp_path / "o").rglob("a.h5"))) as f:
        assert f.attrs["tile_size_um"] == 32.0 and f.attrs["tile_size_px"] == 64


def test_a_patient_with_two_slides_stays_one_patient_in_every_tool(tmp_path):
    """`patient` in the manifest: kept under that name, mapped to CLAM case_id, STAMP PATIENT and TRIDENT's
    slide list, and back; two slides of one patient never become two patients."""
    src = tmp_path / "in"
    src.mkdir()
    rows = []
    for k, (patient, label) in enumerate((("P1", "benign"), ("P1", "benign"), ("P2", "malignant"))):
        Image.fromarray(smear(h=128, w=160, seed=k)[0]).save(src / f"s{k}.png")
        rows.append({"path": f"s{k}.png", "patient": patient, "label": label})
    with open(src / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = build_config(PrepareConfig, overrides=["output.workers=1", "output.qa_thumbnails=0",
                                                 "tiling.patch_size=64", "foreground.min_fraction=0",
                                                 f"resolution.mpp={MPP}"])
    run_prepare([str(src / "m.csv")], tmp_path / "prep", cfg, log=lambda m: None)
    run_extract(create_encoder("handcrafted"),
                ExtractConfig(input=str(tmp_path / "prep"), mode="tiles", out=str(tmp_path / "store"),
                              batch_size=32, workers=0, device="cpu"), log=lambda m: None)
    store_rows = _csv(tmp_path / "store" / "manifest.csv")
    assert sorted(r["patient"] for r in store_rows) == ["P1", "P1", "P2"]  # the user's column, as named
    assert sorted(r["specimen"] for r in store_rows) == ["P1", "P1", "P2"]  # and the one the splits group by
    by_file = {r["id"]: r["patient"] for r in store_rows}
    export_store(tmp_path / "store", "clam", tmp_path / "clam")
    clam = _csv(next((tmp_path / "clam").glob("*.csv")))
    assert {r["slide_id"]: r["case_id"] for r in clam} == by_file
    export_store(tmp_path / "store", "stamp", tmp_path / "stamp")
    slide_table = _csv(next((tmp_path / "stamp").rglob("*slide*.csv")))
    assert {r["FILENAME"].removesuffix(".h5"): r["PATIENT"] for r in slide_table} == by_file
    export_store(tmp_path / "store", "trident", tmp_path / "trident")
    wsi = _csv(tmp_path / "trident" / "wsi_list.csv")
    assert ({r["slide_id"]: r["patient"] for r in wsi} == by_file
            and {r["wsi"] for r in wsi} == {"s0.png", "s1.png", "s2.png"})
    for tool in ("clam", "stamp", "trident"):
        import_folder(tmp_path / tool, tool, tmp_path / f"back_{tool}")
        back = {s.id: patient_of(s) for s in read_store(tmp_path / f"back_{tool}")}
        assert back == by_file, tool
