"""`mil` and `probe` sized to their work and resumable by fold: torch threads chosen from the model's size
(the previous setting back afterwards), and each finished fold x seed kept, so a run stopped half-way trains
only the folds that are missing, with the same numbers; a changed setting trains afresh."""

import json

import numpy as np
import pytest
import torch

from cytofm.eval.evaluate_store import evaluate_mil, evaluate_probes
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.splits import make_splits
from cytofm.mil.train import train_mil as REAL_TRAIN


def bags(n=24, d=8, seed=0) -> LabelledSet:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    bs = []
    for i in range(n):
        b = rng.normal(0, 1, (int(rng.integers(3, 6)), d)).astype(np.float32)
        b[0] += 3.0 * y[i]
        bs.append(b)
    return LabelledSet([f"i{i:02d}" for i in range(n)], bs, y, ["a", "b"], None, None, 0, None)


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr("cytofm.eval.cross_validation.confusion_png", lambda *a, **k: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


class Stopped(Exception):
    """A stop in the middle of a run (as Ctrl-C or SIGTERM would be)."""


def spy_training(monkeypatch, stop_after=None):
    """Counts train_mil calls and the torch threads each ran under; ``stop_after``: a stop then."""
    import cytofm.mil.train as mt

    calls = []

    def spy(*a, **k):
        if stop_after is not None and len(calls) == stop_after:
            raise Stopped
        calls.append(torch.get_num_threads())
        return REAL_TRAIN(*a, **k)

    monkeypatch.setattr(mt, "train_mil", spy)
    return calls


def test_small_mil_trains_on_one_thread_and_restores_the_setting(tmp_path, quiet, monkeypatch):
    data = bags()
    calls, said = spy_training(monkeypatch), []
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate_mil(data, make_splits(data.y, 2, (0,)), tmp_path, epochs=2, log=said.append)
        assert calls == [1, 1] and torch.get_num_threads() == 2
        # a batch of 8 bags of up to 5 instances (90th percentile), 8 -> 256: 81,920 multiply-adds
        assert said[0].startswith("torch threads: 1 (a small model: ~0.0819M multiply-adds a step")
        calls.clear()
        evaluate_mil(data, make_splits(data.y, 2, (0,)), tmp_path / "b", epochs=2, threads=2, log=said.append)
        assert calls == [2, 2] and said[-1] == "torch threads: 2 (threads=2 as set)"
    finally:
        torch.set_num_threads(prev)


def test_a_stopped_mil_run_trains_only_the_missing_folds_with_the_same_numbers(tmp_path, quiet, monkeypatch):
    data = bags()
    splits = make_splits(data.y, 3, (0, 1))  # 6 fold x seed models
    ref = evaluate_mil(data, splits, tmp_path / "ref", epochs=3, save_models=True)
    calls = spy_training(monkeypatch, stop_after=2)
    with pytest.raises(Stopped):
        evaluate_mil(data, splits, tmp_path / "got", epochs=3, save_models=True)
    assert len(list((tmp_path / "got" / "fold_results").glob("*.npz"))) == 2
    calls, said = spy_training(monkeypatch), []
    got = evaluate_mil(data, splits, tmp_path / "got", epochs=3, save_models=True, log=said.append)
    assert len(calls) == 4 and any("2 of 6 fold x seed results reused" in s and "; 4 trained" in s
                                   for s in said)
    for name in ("summary_abmil.json", "folds_abmil.csv", "predictions_abmil.csv"):
        assert (tmp_path / "got" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert got["_members"] == ref["_members"]
    # the same command again: nothing to train
    calls.clear()
    evaluate_mil(data, splits, tmp_path / "got", epochs=3, save_models=True)
    assert calls == []
    # a changed setting is not reused, and its records replace the others
    said.clear()
    evaluate_mil(data, splits, tmp_path / "got", epochs=4, save_models=True, log=said.append)
    assert len(calls) == 6 and any("6 fold result(s) of other settings" in s for s in said)
    # nor is a fold whose model file is gone
    calls.clear()
    (tmp_path / "got" / "models" / "abmil_seed1_fold2.safetensors").unlink()
    evaluate_mil(data, splits, tmp_path / "got", epochs=4, save_models=True)
    assert len(calls) == 1


def test_changed_features_are_not_reused(tmp_path, quiet, monkeypatch):
    data = bags()
    splits = make_splits(data.y, 2, (0,))
    evaluate_mil(data, splits, tmp_path, epochs=2)
    data.bags[0] = data.bags[0] + 1.0
    calls = spy_training(monkeypatch)
    evaluate_mil(data, splits, tmp_path, epochs=2)
    assert len(calls) == 2


def test_probe_folds_are_reused_too(tmp_path, quiet, monkeypatch):
    from cytofm.eval.probes import KnnProbe

    data = bags()
    splits = make_splits(data.y, 3, (0,))
    s1 = evaluate_probes(data, splits, tmp_path, ("knn",), knn_k=3, save_models=True)
    fits = []
    real = KnnProbe.fit
    monkeypatch.setattr(KnnProbe, "fit", lambda self, *a, **k: fits.append(1) or real(self, *a, **k))
    s2 = evaluate_probes(data, splits, tmp_path, ("knn",), knn_k=3, save_models=True)
    assert fits == [] and s1[0]["_members"] == s2[0]["_members"]
    assert json.loads((tmp_path / "summary_knn.json").read_text())["n_items"] == 24
    evaluate_probes(data, splits, tmp_path, ("knn",), knn_k=5, save_models=True)
    assert len(fits) == 3
