"""The refits (`probe --refit`, `mil --refit`) keep whole the groups the folds kept whole, near-duplicate
images joined included: their inner cut (the linear probe's C, MIL's early-stopping part) must not put a
near-duplicate pair on both sides, as no fold does."""


from cytofm.eval.config import MilConfig, ProbeConfig
from cytofm.eval.evaluate_store import evaluate_mil, evaluate_probes, prepare_eval
from cytofm.eval.probe_registry import make_probe
from cytofm.eval.saved_model import save_mil_run
from cytofm.eval.saved_probe import save_probe_run

from tests.helpers import near_duplicate_store

N = 30
JOINED = [0, 1, 0] + list(range(3, N))  # i02 is a brighter copy of i00: one group, the others their own


def _store(root):
    return near_duplicate_store(root, N, instances=2)


def test_refits_get_the_folds_near_duplicate_groups(tmp_path, monkeypatch):
    store = _store(tmp_path / "s")
    data, splits = prepare_eval(store, "label", folds=3, seeds=(0,), log=lambda m: None, warn=lambda m: None)
    assert data.groups is None and splits[0].groups.tolist() == JOINED
    seen = {}
    probe_cls = type(make_probe("linear"))
    real_refit = probe_cls.refit

    def refit(self, x, y, seed=0, groups=None):
        seen["probe"] = None if groups is None else groups.tolist()
        return real_refit(self, x, y, seed, groups)

    monkeypatch.setattr(probe_cls, "refit", refit)
    summaries = evaluate_probes(data, splits, tmp_path / "p", ("linear",), save_models=True)
    save_probe_run(store, tmp_path / "p", data, summaries,
                   ProbeConfig(features=str(store), label="label", methods="linear", refit=True))
    assert seen["probe"] == JOINED

    import cytofm.eval.splits as splits_module

    real_inner = splits_module.inner_validation

    def inner(y, seed, groups=None, **k):
        if len(y) == N:  # the refit's cut (a fold's training part is smaller)
            seen["mil"] = None if groups is None else groups.tolist()
        return real_inner(y, seed, groups=groups, **k)

    monkeypatch.setattr(splits_module, "inner_validation", inner)
    summary = evaluate_mil(data, splits, tmp_path / "m", epochs=1, save_models=True, threads=1)
    save_mil_run(store, tmp_path / "m", data, summary,
                 MilConfig(features=str(store), label="label", epochs=1, refit=True, threads=1))
    assert seen["mil"] == JOINED
