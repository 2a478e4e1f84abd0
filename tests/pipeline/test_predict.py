"""Train once, apply to new cases: `cytofm mil` saves its models, `cytofm predict` applies them to bags it has
never seen with the known answer, refuses features of another encoder, and flags what the model was
trained on."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.operating_point import threshold_for_sensitivity
from cytofm.eval.saved_model import ModelFolderError, read_model_json
from cytofm.features.store import claim_store, write_item
from cytofm.mil.config import MILTrainConfig
from cytofm.mil.saved import architecture, load_model, save_weights
from cytofm.mil.train import predict, train_mil
from cytofm.pipeline.predict import run_predict
from cytofm.utils.io import write_csv

D = 16
IDENTITY = {"encoder": "handcrafted", "weights_hash": "h1", "embed_dim": D, "input_size": 64, "mode": "tiles",
            "tta": False}


def _bags(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Bags of 8-19 noise instances; a positive bag holds one instance shifted along the first 4 axes."""
    rng = np.random.default_rng(seed)
    bags, y = [], np.arange(n) % 2
    for k in range(n):
        x = rng.normal(0, 1, (int(rng.integers(8, 20)), D)).astype(np.float32)
        if y[k]:
            x[int(rng.integers(len(x))), :4] += 3.0
        bags.append(x)
    return bags, y


def _random_phash(name: str) -> str:
    """64 bits that differ from any other item's in about 32 (none is a near copy of another)."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _store(root, bags, y, prefix: str, identity=IDENTITY, specimens=None, hashes=None):
    """A feature store of ``bags``; ``hashes``: per item the (SHA-256, pHash) extraction would store."""
    (root / "features").mkdir(parents=True)
    claim_store(root, identity, {"encoder_spec": identity["encoder"]})
    rows = []
    for k, (b, lab) in enumerate(zip(bags, y, strict=True)):
        i = f"{prefix}{k:03d}"
        write_item(root / "features" / f"{i}.h5", b, np.zeros((len(b), 2), np.int64),
                   {**identity, "source_sha256": hashes[k][0] if hashes else f"sha-{i}",
                    "source_phash": hashes[k][1] if hashes else _random_phash(i)})
        rows.append({"id": i, "path": "", "h5": f"features/{i}.h5", "n_instances": len(b),
                     "label": ["benign",
                               "malignant"][lab], "specimen": specimens[k] if specimens else f"s{i}"})
    write_csv(root / "manifest.csv", rows)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    bags, y = _bags(90, 0)
    store = _store(root / "train_store", bags, y, "t")
    r = CliRunner().invoke(app, ["mil", "--features", str(store), "--label", "label", "--out",
                                 str(root / "run"),
                                 "--folds", "3", "--seeds", "0", "--epochs", "15", "--refit", "lr=0.001"])
    assert r.exit_code == 0, r.output
    return root, store


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mil_saves_every_fold_model_and_a_self_contained_record(trained):
    root, _ = trained
    rec = read_model_json(root / "run")
    files = [m["file"] for m in rec["members"]]
    assert files == [f"models/abmil_seed0_fold{f}.safetensors" for f in range(3)]
    assert rec["refit"]["file"] == "models/abmil_refit.safetensors"
    assert rec["classes"] == ["benign", "malignant"] and rec["feature_dim"] == D
    assert rec["features"]["store"]["weights_hash"] == "h1"
    items = rec["trained_on"]["items"]
    assert len(items) == 90 and items[0]["source_sha256"] == "sha-t000"
    # the operating point is the one the out-of-fold predictions give (one seed: its predictions are the mean)
    oof = _rows(root / "run" / "predictions_abmil.csv")
    op = threshold_for_sensitivity(np.array([r["label"] == "malignant" for r in oof]),
                                   np.array([float(r["p_malignant"]) for r in oof]), 0.95)
    assert rec["operating_point"]["threshold"] == pytest.approx(op["threshold"], abs=1e-5)
    assert rec["operating_point"]["sensitivity"] >= 0.95


def test_predict_on_new_bags_gives_the_known_answer(trained, tmp_path):
    root, _ = trained
    bags, y = _bags(40, 1)  # another seed: bags no model has seen
    new = _store(tmp_path / "new", bags, y, "n", specimens=[f"p{k // 4}" for k in range(40)])
    r = run_predict(root / "run", new, tmp_path / "out", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert r.n_items == 40 and r.n_flagged == 0
    assert np.mean([row["correct"] == "True" for row in rows]) >= 0.9
    assert {"p_benign", "p_malignant", "sd_benign", "sd_malignant", "pred",
            "pred_at_threshold"} <= set(rows[0])
    assert float(rows[0]["p_benign"]) + float(rows[0]["p_malignant"]) == pytest.approx(1, abs=1e-4)
    specimens = _rows(tmp_path / "out" / "specimens.csv")
    assert len(specimens) == 10 and all(s["n_items"] == "4" for s in specimens)
    p0 = np.mean([float(row["p_malignant"]) for row in rows[:4]])
    assert float(specimens[0]["p_malignant"]) == pytest.approx(p0, abs=1e-4)
    assert r.metrics["balanced_accuracy"]["value"] >= 0.9
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_items"] == 40 and summary["operating_point"]["positive_class"] == "malignant"


def test_the_thresholded_decision_follows_the_recorded_positive_class(trained, tmp_path):
    """A model folder whose operating point screens for benign at p(benign) >= 0.3: an item is called
    benign exactly when its p_benign reaches 0.3, whatever the argmax says."""
    import shutil

    root, _ = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    rec = json.loads((run / "model.json").read_text())
    rec["operating_point"] = {**rec["operating_point"], "positive_class": "benign", "threshold": 0.3}
    (run / "model.json").write_text(json.dumps(rec))
    bags, y = _bags(40, 11)
    run_predict(run, _store(tmp_path / "new", bags, y, "n"), tmp_path / "out", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    want = ["benign" if float(r["p_benign"]) >= 0.3 else "malignant" for r in rows]
    assert [r["pred_at_threshold"] for r in rows] == want and len(set(want)) == 2


def test_an_unknown_positive_class_is_refused_before_training(trained, tmp_path):
    _, store = trained
    r = CliRunner().invoke(app, ["mil", "--features", str(store), "--label", "label", "--out",
                                 str(tmp_path / "run"), "--positive-class", "atypical"])
    assert r.exit_code == 2 and "not a class of this task (benign, malignant)" in r.output
    assert not list((tmp_path / "run").glob("models/*"))


def test_the_training_items_are_flagged_and_left_out(trained, tmp_path):
    root, store = trained
    r = run_predict(root / "run", store, tmp_path / "out", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert r.n_flagged == 90
    assert all(row["trained_on"] == "True" and row["excluded"] == "True" for row in rows)
    assert r.metrics is None and "left out of the metrics" in r.lines[0]
    again = run_predict(root / "run", store, tmp_path / "all", include_seen=True, heatmaps=0,
                        log=lambda m: None)
    assert again.metrics is not None and "included in the metrics" in again.lines[0]


def test_features_of_another_encoder_are_refused(trained, tmp_path):
    root, _ = trained
    bags, y = _bags(6, 2)
    other = _store(tmp_path / "other", bags, y, "o", identity={**IDENTITY, "weights_hash": "h2"})
    with pytest.raises(ModelFolderError, match="weights_hash: 'h2' in the store, 'h1' in the model"):
        run_predict(root / "run", other, tmp_path / "out", heatmaps=0, log=lambda m: None)


def test_the_refit_model_and_a_missing_file(trained, tmp_path):
    root, _ = trained
    bags, y = _bags(20, 3)
    new = _store(tmp_path / "new", bags, y, "n")
    r = run_predict(root / "run", new, tmp_path / "out", use="refit", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert r.metrics["balanced_accuracy"]["value"] >= 0.8
    assert all(float(row["sd_benign"]) == 0 for row in rows)  # one model: no spread
    broken = tmp_path / "broken"
    broken.mkdir()
    rec = json.loads((root / "run" / "model.json").read_text())
    (broken / "model.json").write_text(json.dumps(rec))
    with pytest.raises(ModelFolderError, match="3 model file.s. missing, e.g. models/abmil_seed0_fold0"):
        read_model_json(broken)
    (broken / "model.json").write_text(json.dumps({**rec, "format": 99, "cytofm_version": "9.9"}))
    with pytest.raises(ModelFolderError, match="format 99 .written by cytofm 9.9."):
        read_model_json(broken)


@pytest.mark.parametrize("model", ["abmil", "transmil"])
def test_save_then_load_gives_the_same_probabilities(model, tmp_path):
    bags, y = _bags(30, 4)
    t = [torch.from_numpy(b) for b in bags]
    cfg = MILTrainConfig(epochs=2, model=model, hidden=32, attn_dim=8)
    fitted = train_mil(t, y, None, None, 2, cfg)
    save_weights(fitted, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors", architecture(cfg, D, 2))
    (p1, a1), (p2, a2) = predict(fitted, t), predict(loaded, t)
    assert np.array_equal(p1, p2) and all(np.array_equal(x, z) for x, z in zip(a1, a2, strict=True))
    with pytest.raises(ValueError, match="does not fit a"):
        load_model(tmp_path / "m.safetensors", architecture(cfg, D + 1, 2))


def _fields(root, n: int, seed: int):
    """Fields of two kinds a colour feature tells apart: purple cells (benign) or red ones (malignant)."""
    from PIL import Image

    from tests.helpers import smear

    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        kind = ["benign", "malignant"][k % 2]
        cells = [(int(rng.integers(40, 440)), int(rng.integers(40, 440)), int(rng.integers(20, 35)))
                 for _ in range(6)]
        rgb, _ = smear(480, 480, cells, (120, 80, 160) if kind == "benign" else (190, 70, 70),
                       seed=seed * 100 + k)
        root.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / f"{seed}_{k}.png")
        rows.append({"path": f"{seed}_{k}.png", "label": kind})
    write_csv(root / "manifest.csv", rows)
    return root / "manifest.csv"


def test_predict_prepares_and_extracts_new_images_with_the_recorded_settings(tmp_path):
    runner = CliRunner()
    train = _fields(tmp_path / "train", 16, 0)
    r = runner.invoke(app, ["extract", "--input", str(train), "--mode", "tiles", "--encoder", "handcrafted",
                            "--out", str(tmp_path / "store"), "workers=0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["mil", "--features", str(tmp_path / "store"), "--label", "label", "--out",
                            str(tmp_path / "run"), "--folds", "2", "--seeds", "0", "--epochs", "20",
                            "lr=0.003"])
    assert r.exit_code == 0, r.output
    rec = read_model_json(tmp_path / "run")
    assert rec["features"]["prepare"]["tiling"]["patch_size"] == 224
    new = _fields(tmp_path / "new", 8, 1)
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "run"), "--input", str(new), "--out",
                            str(tmp_path / "pred"), "--heatmaps", "2"])
    assert r.exit_code == 0, r.output
    rows = _rows(tmp_path / "pred" / "predictions.csv")
    assert len(rows) == 8 and all(row["correct"] == "True" for row in rows)
    assert (tmp_path / "pred" / "prepared" / "manifest.csv").is_file()
    assert len(list((tmp_path / "pred" / "heatmaps").glob("*.png"))) >= 2
    import h5py

    with h5py.File(tmp_path / "pred" / "attention.h5") as f:
        a = f[rows[0]["id"]]["attention"][:]
        assert a.sum() == pytest.approx(1, abs=1e-5) and len(a) == len(f[rows[0]["id"]]["coords"][:])
    from cytofm.data.annotations.geojson import read_annotations

    from tests.helpers import qupath_geojson_problems

    qp = tmp_path / "pred" / "geojson" / f"{rows[0]['id']}.geojson"
    assert qupath_geojson_problems(qp) == []
    objects = read_annotations(qp, log=lambda m: None)  # each patch a tile, the prediction an annotation
    tiles = [g for g in objects if g.object_type == "tile"]
    rest = [(g.classification, g.object_type) for g in objects if g not in tiles]
    assert len(tiles) == len(a) and rest == [(rows[0]["pred"], "annotation")]
    feats = tmp_path / "pred" / "features" / "features"
    stamps = {p.name: p.stat().st_mtime_ns for p in feats.glob("*.h5")}
    again = runner.invoke(app, ["predict", "--model", str(tmp_path / "run"), "--input", str(new), "--out",
                                str(tmp_path / "pred"), "--heatmaps", "0"])
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in feats.glob("*.h5")} == stamps
    assert _rows(tmp_path / "pred" / "predictions.csv") == rows  # finished items reused, the same answer
    # a prepared folder as input: used when tiled as recorded, refused when tiled otherwise
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "pred" /
                            "prepared"), "--out", str(tmp_path / "pred2"), "--heatmaps", "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["prepare", str(new), "--out", str(tmp_path / "other"),
                            "tiling.patch_size=112"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "other"),
                            "--out", str(tmp_path / "pred3"), "--heatmaps", "0"])
    assert r.exit_code != 0 and "tiling.patch_size: 112 there, 224 in the model" in " ".join(r.output.split())


@pytest.mark.parametrize("method", ["linear", "knn"])
def test_a_loaded_probe_gives_the_fitted_probabilities(method, tmp_path):
    from cytofm.eval.probes import knn_probe, linear_probe
    from cytofm.eval.saved_probe import load_probe, probe_proba, save_probe

    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, (60, 8)), np.arange(60) % 3
    x[:, 0] += y
    fitted: list = []
    fit = linear_probe if method == "linear" else knn_probe
    p = fit(x[:40], y[:40], x[40:], 3, fitted=fitted)
    save_probe(method, fitted[0], tmp_path / "p.safetensors")
    assert np.array_equal(probe_proba(load_probe(method, tmp_path / "p.safetensors"), x[40:], 3), p)


def test_probe_runs_are_applied_to_new_items(tmp_path):
    bags, y = _bags(60, 6)
    for b, lab in zip(bags, y, strict=True):  # a signal the mean-pooled features carry (cosine too)
        b[:, 4] += 2.0 * (2 * lab - 1)
    store = _store(tmp_path / "train", bags, y, "t")
    r = CliRunner().invoke(app, ["probe", "--features", str(store), "--label", "label", "--out",
                                 str(tmp_path / "run"), "--folds", "3", "--seeds", "0", "--refit"])
    assert r.exit_code == 0, r.output
    rec = read_model_json(tmp_path / "run")
    assert rec["kind"] == "probe" and rec["default_method"] == "linear"
    assert set(rec["methods"]) == {"linear", "knn"}
    new_bags, new_y = _bags(30, 7)
    for b, lab in zip(new_bags, new_y, strict=True):
        b[:, 4] += 2.0 * (2 * lab - 1)
    new = _store(tmp_path / "new", new_bags, new_y, "n")
    for method, use in (("linear", "ensemble"), ("knn", "ensemble"), ("linear", "refit")):
        res = run_predict(tmp_path / "run", new, tmp_path / f"out_{method}_{use}", use=use, method=method,
                          heatmaps=0, log=lambda m: None)
        assert res.metrics["balanced_accuracy"]["value"] >= 0.85, (method, use)
        assert not (tmp_path / f"out_{method}_{use}" / "attention.h5").exists()  # a probe has no attention
    with pytest.raises(ModelFolderError, match="saved linear, knn, not 'fewshot'"):
        run_predict(tmp_path / "run", new, tmp_path / "x", method="fewshot", heatmaps=0, log=lambda m: None)


def test_an_image_in_the_encoders_pretraining_record_is_flagged(trained, tmp_path, monkeypatch):
    """Items 0 and 1 were in the pool: 0 by its bytes, 1 as a re-encoded copy (another SHA-256, a pHash 2
    bits away); 2 is neither, and 3 has no pHash in its store (checked by its bytes only, and said)."""
    from cytofm.data.provenance.pretraining_record import write_record
    from cytofm.eval import pretraining_guard

    root, _ = trained
    bags, y = _bags(4, 8)
    hashes = [("a" * 64, "f0f0f0f0f0f0f0f0"), ("b" * 64, "0f0f0f0f0f0f0f03"), ("c" * 64, "ff00ff00ff00ff00"),
              ("d" * 64, "")]
    new = _store(tmp_path / "new", bags, y, "n", hashes=hashes)
    pool = [{"dataset": "x", "relpath": "0.png", "sha256": "a" * 64, "phash": "123456789abcdef0"},
            {"dataset": "x", "relpath": "1.png", "sha256": "e" * 64, "phash": "0f0f0f0f0f0f0f0f"}]
    record = write_record(pool, tmp_path / "record.csv.gz")
    monkeypatch.setattr(pretraining_guard, "pretraining_record_for", lambda spec: record)
    r = run_predict(root / "run", new, tmp_path / "out", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert [row["seen_in_pretraining"] for row in rows] == ["True", "True", "False", "False"]
    assert r.n_flagged == 2 and [row["checked_by"] for row in rows][2:] == ["bytes+phash", "bytes"]
    assert any("1 item(s) checked for leakage by their bytes only" in ln for ln in r.lines)


def test_a_re_encoded_copy_of_a_training_item_is_flagged(trained, tmp_path):
    """Another file (SHA-256) of a training image whose pHash is within SEEN_BITS counts as trained on."""
    root, _ = trained
    rec = read_model_json(root / "run")
    t0, t1 = rec["trained_on"]["items"][:2]
    near = f"{int(t0['source_phash'], 16) ^ 0b1001:016x}"  # 2 bits from item 0
    far = f"{int(t1['source_phash'], 16) ^ 0xFFFF:016x}"  # 16 bits from item 1
    bags, y = _bags(2, 10)
    new = _store(tmp_path / "new", bags, y, "n", hashes=[("x" * 64, near), ("y" * 64, far)])
    run_predict(root / "run", new, tmp_path / "out", heatmaps=0, log=lambda m: None)
    assert [row["trained_on"] for row in _rows(tmp_path / "out" / "predictions.csv")] == ["True", "False"]


def test_the_training_store_is_flagged_when_the_encoder_has_a_pretraining_record(trained, tmp_path,
                                                                                  monkeypatch):
    """Both checks at once: the pretraining guard's hashes must not replace the training items' hashes."""
    from cytofm.data.provenance.pretraining_record import write_record
    from cytofm.eval import pretraining_guard

    root, store = trained
    record = write_record([{"dataset": "x", "relpath": "a.png", "sha256": "0" * 64, "phash": "0" * 16}],
                          tmp_path / "record.csv.gz")
    monkeypatch.setattr(pretraining_guard, "pretraining_record_for", lambda spec: record)
    r = run_predict(root / "run", store, tmp_path / "out", heatmaps=0, log=lambda m: None)
    assert r.n_flagged == 90


def test_a_model_folder_of_the_first_format_is_applied(trained, tmp_path):
    """Items recorded by id and SHA-256 alone (no pHash, specimen or ensemble membership), as the first
    cytofm that saved models wrote them: trained on by their bytes, specimens from the run's list."""
    import shutil

    root, store = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    rec = json.loads((run / "model.json").read_text())
    rec["trained_on"]["items"] = [{"id": i["id"], "source_sha256": i["source_sha256"]}
                                  for i in rec["trained_on"]["items"]][:45]
    rec["training"]["group_column"] = "specimen"
    rec["trained_on"]["specimens"] = [f"st{k:03d}" for k in range(60)]
    (run / "model.json").write_text(json.dumps(rec))
    r = run_predict(run, store, tmp_path / "out", heatmaps=0, log=lambda m: None)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert [row["trained_on"] for row in rows] == ["True"] * 45 + ["False"] * 45
    assert [row["specimen_trained_on"] for row in rows] == ["True"] * 60 + ["False"] * 30
    assert r.n_flagged == 60


def test_a_store_of_another_readout_is_refused(trained, tmp_path):
    root, _ = trained
    bags, y = _bags(4, 9)
    other = _store(tmp_path / "other", bags, y, "o")
    meta = json.loads((other / "store.json").read_text())
    (other / "store.json").write_text(json.dumps({**meta, "encoder_spec": "handcrafted#pool=mean"}))
    with pytest.raises(ModelFolderError, match="readout: 'mean' in the store, 'cls' in the model"):
        run_predict(root / "run", other, tmp_path / "out", heatmaps=0, log=lambda m: None)


def test_a_fixed_splits_test_part_is_not_trained_on_by_the_ensemble_but_by_the_refit_model(tmp_path):
    bags, y = _bags(40, 12)
    store = _store(tmp_path / "store", bags, y, "f")
    rows = _rows(store / "manifest.csv")
    for k, r in enumerate(rows):
        r["split"] = "test" if k >= 30 else "train"
    write_csv(store / "manifest.csv", rows)
    r = CliRunner().invoke(app, ["mil", "--features", str(store), "--label", "label", "--out",
                                 str(tmp_path / "run"),
                                 "--split-column", "split", "--seeds", "0", "--epochs", "5", "--refit"])
    assert r.exit_code == 0, r.output
    held = [i["id"] for i in read_model_json(tmp_path / "run")["trained_on"]["items"] if not i["in_ensemble"]]
    assert held == [f"f{k:03d}" for k in range(30, 40)]
    for use, want in (("ensemble", ["False"] * 10), ("refit", ["True"] * 10)):
        run_predict(tmp_path / "run", store, tmp_path / use, use=use, heatmaps=0, log=lambda m: None)
        assert [row["trained_on"] for row in _rows(tmp_path / use / "predictions.csv")][30:] == want, use


def test_a_model_reading_cells_prepares_detects_and_measures_new_fields(tmp_path):
    """Fields of large cells (malignant) or small ones (benign), read as bags of their cells' measurements:
    predict detects the cells of new fields with the recorded cell settings and calls each field."""
    from PIL import Image

    from tests.helpers import smear

    def fields(root, n, seed):
        rng = np.random.default_rng(seed)
        root.mkdir(parents=True)
        rows = []
        for k in range(n):
            kind = ["benign", "malignant"][k % 2]
            r = 9 if kind == "benign" else 16
            jitter = rng.integers(-4, 5, (6, 2))
            cells = [(40 + 70 * (j % 3) + int(jitter[j, 0]), 40 + 70 * (j // 3) + int(jitter[j, 1]), r)
                     for j in range(6)]
            Image.fromarray(smear(180, 240, cells, seed=seed * 100 + k)[0]).save(root / f"{seed}_{k}.png")
            rows.append({"path": f"{seed}_{k}.png", "label": kind, "mpp": 0.25})
        write_csv(root / "manifest.csv", rows)
        return root / "manifest.csv"

    runner = CliRunner()
    sizes = ["cells.typical_diameter_um=6", "cells.min_diameter_um=2", "cells.max_diameter_um=12"]
    r = runner.invoke(app, ["prepare", str(fields(tmp_path / "train", 16, 0)), "--out",
                            str(tmp_path / "prep"), "--preset", "smear_cells", "--cells", *sizes])
    assert r.exit_code == 0, r.output
    for args in (["extract", "--input", str(tmp_path / "prep"), "--mode", "cells", "--encoder",
                  "morphometrics", "--out", str(tmp_path / "store")],
                 # six cells on one grid over a pale background: every field is a near-duplicate of the
                 # others by the benchmark's rule, which would leave one group per class
                 ["mil", "--features", str(tmp_path / "store"), "--label", "label", "--out",
                  str(tmp_path / "run"), "--folds", "2", "--seeds", "0", "--epochs", "30", "lr=0.003",
                  "--no-group-duplicates"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    assert read_model_json(tmp_path / "run")["features"]["prepare"]["cells"]["typical_diameter_um"] == 6
    res = run_predict(tmp_path / "run", fields(tmp_path / "new", 6, 1), tmp_path / "pred", heatmaps=0,
                      log=lambda m: None)
    rows = _rows(tmp_path / "pred" / "predictions.csv")
    assert len(rows) == 6 and all(row["correct"] == "True" for row in rows) and res.n_flagged == 0
    assert (tmp_path / "pred" / "prepared" / "cells.csv").is_file()
