"""The probes are one registry: ``cytofm probe --help``, config validation, the evaluation's dispatch and
the saving and loading of fitted probes all read it, so a probe registered there is offered, run, saved
and read back with nothing else to edit, and a name not there is refused with the closest one."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval import probe_registry
from cytofm.eval.config import ProbeConfig, TaskConfig
from cytofm.eval.evaluate_store import evaluate_probes, refit_probe
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.probe_registry import PROBES, make_probe
from cytofm.eval.probes import Probe
from cytofm.eval.saved_probe import apply_saved_probe
from cytofm.eval.splits import make_splits
from cytofm.utils.registry import Registry


class CentroidProbe(Probe):
    """A stand-in probe: the class means, softmax over minus the distances to them."""

    name = "centroid"

    def fit(self, x, y, seed=0, groups=None) -> dict:
        classes = np.unique(y)
        return {"centroids": np.stack([x[y == c].mean(0) for c in classes]), "classes": classes}

    def proba(self, fitted, x, n_classes):
        d = -np.linalg.norm(x[:, None] - fitted["centroids"][None], axis=-1)
        e = np.exp(d - d.max(1, keepdims=True))
        out = np.zeros((len(x), n_classes))
        out[:, fitted["classes"]] = e / e.sum(1, keepdims=True)
        return out

    def arrays(self, fitted):
        return {"centroids": fitted["centroids"], "classes": fitted["classes"].astype(np.int64)}

    def restore(self, a):
        return {"centroids": a["centroids"], "classes": a["classes"]}


@pytest.fixture
def with_centroid(monkeypatch):
    """PROBES with the stand-in added, for this test only."""
    reg: Registry = Registry(PROBES.kind)
    for e in PROBES.entries():
        reg.add(e.name, e.target, e.description, **e.meta)
    reg.add("centroid", f"{__name__}:CentroidProbe", "nearest class mean (a test's stand-in)", saved=True)
    monkeypatch.setattr(probe_registry, "PROBES", reg)
    monkeypatch.setattr("cytofm.eval.cross_validation.confusion_png", lambda *a, **k: None)
    return reg


def _data(n=30) -> LabelledSet:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    bags = [rng.normal(0, 1, (1, 4)).astype(np.float32) + 2.0 * y[i] for i in range(n)]
    return LabelledSet([f"i{i:02d}" for i in range(n)], bags, y, ["a", "b"], None, None, 0)


def test_every_registered_probe_is_offered_validated_and_saved_as_its_entry_says():
    assert PROBES.names() == ("linear", "knn", "fewshot")
    out = CliRunner().invoke(app, ["probe", "--help"], terminal_width=300).output
    text = re.sub(r"\x1b\[[0-9;]*m", "", out)
    for e in PROBES.entries():
        assert e.name in text and e.description.split()[0] in text
        assert ProbeConfig(methods=e.name).methods == [e.name]
        assert TaskConfig(name="t", data="d", label="y", methods=[e.name]).methods == [e.name]
        probe = make_probe(e.name)
        assert probe.name == e.name and isinstance(probe, Probe)
        assert e.saved == (type(probe).arrays is not Probe.arrays)  # the fact is what the class does


def test_an_unknown_probe_is_refused_with_the_closest_name(tmp_path):
    for schema in (lambda m: ProbeConfig(methods=m), lambda m: TaskConfig(name="t", data="d", label="y",
                                                                          methods=m.split(","))):
        with pytest.raises(ValueError, match=r"unknown probe method\(s\) lienar \(did you mean 'linear'\?\); "
                                             "valid: linear, knn, fewshot"):
            schema("knn,lienar")
    r = CliRunner().invoke(app, ["probe", "--features", "f", "--label", "l", "--out", str(tmp_path / "o"),
                                 "--methods", "knnn"])
    assert r.exit_code == 2 and "did you mean 'knn'" in r.output and "Traceback" not in r.output
    data = _data()
    with pytest.raises(ValueError, match=r"unknown probe method\(s\) \['svm'\]"):
        evaluate_probes(data, make_splits(data.y, 3, (0,)), tmp_path, ("svm",))


def test_a_registered_stand_in_probe_runs_is_saved_loaded_and_refit(with_centroid, tmp_path):
    assert ProbeConfig(methods="centroid,linear").methods == ["centroid", "linear"]
    data = _data()
    splits = make_splits(data.y, 3, (0,))
    summaries = evaluate_probes(data, splits, tmp_path, ("centroid", "fewshot"), shots=2, save_models=True)
    assert [s["method"] for s in summaries] == ["centroid", "fewshot2"]
    assert summaries[0]["balanced_accuracy"]["mean"] > 0.9 and summaries[1]["_members"] == []
    members = summaries[0]["_members"]
    assert [(m["seed"], m["fold"]) for m in members] == [(0, 0), (0, 1), (0, 2)]
    probe, x = make_probe("centroid"), data.pooled()
    for m, sp in zip(members, splits, strict=True):  # each saved fold model is the one fitted on its fold
        fitted = probe.fit(x[sp.train], data.y[sp.train])
        assert np.array_equal(apply_saved_probe("centroid", tmp_path / m["file"], x, 2),
                              probe.proba(fitted, x, 2))
    rec = refit_probe(data, tmp_path, "centroid")
    assert rec == {"file": "models/centroid_refit.safetensors", "seed": 0, "n_items": len(data.y)}
    refit = probe.load(tmp_path / rec["file"])
    assert np.array_equal(refit["centroids"], probe.fit(x, data.y)["centroids"])
    with pytest.raises(NotImplementedError, match="fewshot probe is evaluated, not saved"):
        make_probe("fewshot").save(make_probe("fewshot").fit(x, data.y), tmp_path / "f.safetensors")


@pytest.mark.parametrize("method", ["linear", "knn"])
def test_a_saved_probe_applies_itself_as_predict_applies_its_estimator(method, tmp_path):
    from cytofm.eval.saved_probe import load_probe, probe_proba, save_probe

    data = _data()
    x, probe = data.pooled(), make_probe(method, knn_k=5)
    save_probe(method, probe.fit(x[:20], data.y[:20]), tmp_path / "p.safetensors")
    assert np.array_equal(apply_saved_probe(method, tmp_path / "p.safetensors", x[20:], 2),
                          probe_proba(load_probe(method, tmp_path / "p.safetensors"), x[20:], 2))
