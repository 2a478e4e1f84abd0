"""Spies on every place a model learns from data: no test item reaches training, validation or feature
standardisation, and inner splits keep groups whole. And the one matcher of seen images (``eval.leakage``)
that predict and the pretraining guard share: the same bytes, or a pHash a few bits away."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from cytofm.eval.evaluate_store import evaluate_mil, evaluate_probes
from cytofm.eval.labelled_set import LabelledSet
from cytofm.eval.splits import inner_validation, make_splits


def planted(n=36, bag=False, seed=0):
    """Items whose first feature is their own index (so a spy can name every row it sees); groups of 3."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    bags = []
    for i in range(n):
        k = 3 if bag else 1
        f = rng.normal(0, 1, (k, 4)).astype(np.float32)
        f[:, 1] += 2.0 * y[i]
        f[:, 0] = i
        bags.append(f)
    groups = np.arange(n) // 3
    return LabelledSet([f"i{i:02d}" for i in range(n)], bags, y, ["a", "b"], groups, None, 0)


def test_probes_standardise_and_fit_on_training_items_only(tmp_path, monkeypatch):
    data = planted()
    x = data.pooled()
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    seen: dict[str, list[set]] = {"scaler": [], "knn": []}
    fit_scaler, fit_knn = StandardScaler.fit, KNeighborsClassifier.fit

    def spy_scaler(self, X, y=None, **kw):
        seen["scaler"].append(set(np.asarray(X)[:, 0].astype(int).tolist()))
        return fit_scaler(self, X, y, **kw)

    def spy_knn(self, X, y):
        rows = np.asarray(X)
        idx = np.abs(rows[:, None, :] - unit[None]).sum(-1).argmin(1)  # the Normalizer's rows, matched back
        assert np.allclose(rows, unit[idx], atol=1e-6)
        seen["knn"].append(set(idx.tolist()))
        return fit_knn(self, X, y)

    monkeypatch.setattr(StandardScaler, "fit", spy_scaler)
    monkeypatch.setattr(KNeighborsClassifier, "fit", spy_knn)
    # neither figures nor the item bootstrap are under test
    monkeypatch.setattr("cytofm.eval.cross_validation.confusion_png", lambda *a, **k: None)
    monkeypatch.setattr("cytofm.eval.cross_validation.bootstrap_ci", lambda *a, **k: {})
    for sp in make_splits(data.y, 3, (0,), data.groups):
        for v in seen.values():
            v.clear()
        evaluate_probes(data, [sp], tmp_path, ("linear", "knn"))
        train, test = set(sp.train.tolist()), set(sp.test.tolist())
        assert seen["scaler"] and seen["knn"]
        for rows in seen["scaler"] + seen["knn"]:
            assert rows <= train and not rows & test
        assert seen["scaler"][-1] == train and seen["knn"][-1] == train  # the final fit uses the whole fold
        # the inner CV choosing C: each inner fit leaves whole groups out
        for rows in seen["scaler"][:-1]:
            held = train - rows
            assert held and not set(data.groups[list(held)]) & set(data.groups[list(rows)])


def test_abmil_trains_validates_and_standardises_on_training_items_only(tmp_path, monkeypatch):
    import cytofm.mil.train as mt

    data = planted(n=30, bag=True)
    calls = []
    real = mt.train_mil  # evaluate_mil trains every registered MIL model through train_mil

    def spy(train, y_train, val, y_val, n_classes, cfg):
        model = real(train, y_train, val, y_val, n_classes, cfg)
        ids = lambda bags: {int(b[0, 0]) for b in bags}  # noqa: E731
        calls.append((ids(train), ids(val)))
        return model

    monkeypatch.setattr(mt, "train_mil", spy)
    monkeypatch.setattr("cytofm.eval.cross_validation.confusion_png", lambda *a, **k: None)
    monkeypatch.setattr("cytofm.eval.cross_validation.bootstrap_ci", lambda *a, **k: {})
    splits = make_splits(data.y, 3, (0,), data.groups)
    evaluate_mil(data, splits, tmp_path, epochs=2)
    assert len(calls) == len(splits)
    for (tr, val), sp in zip(calls, splits, strict=True):
        assert tr and val and not tr & val
        assert tr | val <= set(sp.train.tolist()) and not (tr | val) & set(sp.test.tolist())
        assert not set(data.groups[list(tr)]) & set(data.groups[list(val)])  # validation keeps groups whole


def test_abmil_standardisation_uses_the_training_bags():
    from cytofm.mil.config import MILTrainConfig
    from cytofm.mil.train import train_mil

    data = planted(n=12, bag=True)
    train = [torch.from_numpy(b) for b in data.bags[:8]]
    model = train_mil(train, data.y[:8], None, None, 2, MILTrainConfig(epochs=1))
    buffers = {k: v for k, v in model.state_dict().items() if v.shape == (4,)}
    inst = torch.cat(train).double()
    assert any(torch.allclose(v, inst.mean(0).float()) for v in buffers.values())
    assert any(torch.allclose(v, inst.std(0).float()) for v in buffers.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_validation_with_groups_is_disjoint(seed):
    y = np.array([0, 1] * 30)
    groups = np.repeat(np.arange(12), 5)
    tr, val = inner_validation(y, seed, groups=groups)
    assert len(val) and set(tr) | set(val) == set(range(60)) and not set(tr) & set(val)
    assert not set(groups[tr]) & set(groups[val])


def test_seen_images_are_matched_by_bytes_or_a_near_phash():
    from cytofm.data.provenance.hashing import ImageHash
    from cytofm.eval.leakage import SEEN_BITS, SeenImages
    from cytofm.eval.pretraining_guard import seen_in_pretraining

    def h(sha, phash):
        return ImageHash(sha, phash, np.zeros(0, np.float32))

    base = 0xF0F0F0F0F0F0F0F0
    record = [{"sha256": "a" * 64, "phash": f"{base:016x}"}, {"sha256": "b" * 64, "phash": "0" * 16}]
    hashes = [h("a" * 64, "ffffffffffffffff"),  # the same bytes, another picture
              h("c" * 64, f"{base ^ 0b11:016x}"),  # a re-encoded copy: 2 bits away
              h("d" * 64, f"{base ^ 0xFF:016x}"),  # 8 bits away: another image
              h("b" * 64, ""),  # no pHash: by its bytes only
              h("e" * 64, ""), None]  # no hash: not seen
    seen = SeenImages.from_record(record)
    assert seen.seen(hashes).tolist() == [True, True, False, True, False, False]
    assert seen.seen(hashes, bits=8).tolist() == [True, True, True, True, False, False]
    assert seen_in_pretraining(hashes[:5], record).tolist() == seen.seen(hashes[:5]).tolist()
    assert SEEN_BITS == 4 and not seen_in_pretraining(hashes[:5], []).any()
    # unknown hashes ('') are no image: nothing matches them
    trained = SeenImages.from_hashes(["", "a" * 64], ["", f"{base:016x}"])
    assert trained == SeenImages(frozenset({"a" * 64}), (f"{base:016x}",))
    probe = [h("", ""), h("a" * 64, ""), h("x", f"{base ^ 1:016x}")]
    assert trained.seen(probe).tolist() == [False, True, True]
    # more items than one chunk of comparisons: every chunk is compared
    many = [h(f"{k}", f"{base ^ (1 << (k % 60)) if k % 3 == 0 else base ^ 0xFFFF:016x}") for k in range(1100)]
    assert seen.seen(many).tolist() == [k % 3 == 0 for k in range(1100)]
