"""Evaluate one feature store with the registered probes or MIL models (shared by `probe`, `mil` and
`benchmark`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cytofm.eval.cross_validation import run_method
from cytofm.eval.labelled_set import LabelledSet, load_labelled_store
from cytofm.eval.splits import make_splits


def prepare_eval(features: str | Path, label: str, group_column=None, split_column=None, folds: int = 5,
                 seeds=(0, 1, 2), exclude=(), log=print, warn=print):
    data = load_labelled_store(str(features), label, group_column, split_column, tuple(exclude), log=log)
    splits = make_splits(data.y, folds, tuple(seeds), data.groups, data.fixed, warn=warn, names=data.classes)
    return data, splits


def evaluate_probes(data: LabelledSet, splits, out: Path, methods=("linear", "knn"), knn_k: int = 20,
                    shots: int = 5, progress=None, title: str = "", save_models: bool = False) -> list[dict]:
    """Each probe (names of ``cytofm.eval.probe_registry.PROBES``) over the splits; ``save_models``: every
    fold x seed model of the saved probes (linear, kNN) is written to ``out/models/`` (listed in each
    summary's ``_members``) for ``cytofm predict``."""
    from cytofm.eval.probe_registry import PROBES, make_probe

    bad = [m for m in methods if m not in PROBES]
    if bad:
        raise ValueError(f"unknown probe method(s) {bad}; valid: {', '.join(PROBES)}")
    x, n_c, g = data.pooled(), len(data.classes), data.groups
    members: dict[str, list[dict]] = {m: [] for m in methods}

    def fold_method(m: str):
        probe, keep = make_probe(m, knn_k, shots), save_models and PROBES.entry(m).saved

        def run(tr, te, sp):
            fitted = probe.fit(x[tr], data.y[tr], sp.seed, g[tr] if g is not None else None)
            if keep:
                name = f"models/{m}_seed{sp.seed}_fold{sp.fold}.safetensors"
                probe.save(fitted, out / name)
                members[m].append({"file": name, "seed": int(sp.seed), "fold": int(sp.fold)})
            return probe.proba(fitted, x[te], n_c), None
        return probe.result_name, run

    # one BLAS thread: these problems are small (hundreds x hundreds), and threaded BLAS made every
    # logistic-regression fit 10-20x slower on this 2-core machine (measured)
    with threadpool_limits(1):
        summaries = [run_method(name, data, splits, fn, out, progress, title)
                     for name, fn in map(fold_method, methods)]
    for m, s in zip(methods, summaries, strict=True):
        s["_members"] = members[m]
        s["_trained"] = trained_by_some_split(splits, len(data.y))
    return summaries


def trained_by_some_split(splits, n: int) -> np.ndarray:
    """(n,) bool: the items some fold x seed model was trained on (k-fold: all of them; a fixed split: its
    train part), which are the items an ensemble of those models has seen."""
    seen = np.zeros(n, bool)
    for sp in splits:
        seen[sp.train] = True
    return seen


def evaluate_mil(data: LabelledSet, splits, out: Path, epochs: int = 50, lr: float = 2e-4, progress=None,
                 title: str = "", model: str = "abmil", save_models: bool = False) -> dict:
    """``model`` (a name of ``cytofm.mil.registry``) over the splits; its name is the method's name in the
    tables and files (``folds_abmil.csv``, ``attention_<seed>.npz``). ``save_models``: every fold x seed
    model is written to ``out/models/`` (listed in ``summary["_members"]``) for ``cytofm predict``."""
    import torch

    from cytofm.eval.splits import inner_validation
    from cytofm.mil.config import MILTrainConfig
    from cytofm.mil.registry import MIL_MODELS
    from cytofm.mil.saved import save_weights
    from cytofm.mil.train import predict, train_mil

    bags = [torch.from_numpy(b) for b in data.bags]
    members: list[dict] = []
    n_c = len(data.classes)
    attention: dict[int, dict[str, np.ndarray]] = {}

    def method(tr, te, sp):
        itr, ival = inner_validation(data.y[tr], sp.seed,
                                     groups=data.groups[tr] if data.groups is not None else None)
        cfg = MILTrainConfig(epochs=epochs, lr=lr, seed=sp.seed, model=model)
        fitted = train_mil([bags[i] for i in tr[itr]], data.y[tr[itr]], [bags[i] for i in tr[ival]],
                           data.y[tr[ival]], n_c, cfg)
        if save_models:
            name = f"models/{model}_seed{sp.seed}_fold{sp.fold}.safetensors"
            save_weights(fitted, out / name)
            members.append({"file": name, "seed": int(sp.seed), "fold": int(sp.fold)})
        proba, attn = predict(fitted, [bags[i] for i in te])
        for i, a in zip(te, attn, strict=True):
            attention.setdefault(sp.seed, {})[data.ids[i]] = a
        return proba, attn

    MIL_MODELS.get(model)  # an unknown name is refused before any fitting
    summary = run_method(model, data, splits, method, out, progress, title)
    for seed, d in attention.items():
        np.savez_compressed(out / f"attention_{seed}.npz", **d)
    summary["_members"] = members
    summary["_trained"] = trained_by_some_split(splits, len(data.y))
    return summary


def refit_probe(data: LabelledSet, out: Path, method: str, knn_k: int = 20, seed: int = 0) -> dict:
    """One probe on every labelled item, chosen as in every fold (linear: C by the same inner CV)."""
    from cytofm.eval.probe_registry import make_probe

    probe = make_probe(method, knn_k)
    name = f"models/{method}_refit.safetensors"
    probe.save(probe.refit(data.pooled(), data.y, seed, data.groups), out / name)
    return {"file": name, "seed": seed, "n_items": len(data.y)}


def refit_mil(data: LabelledSet, out: Path, epochs: int, lr: float, model: str, seed: int = 0) -> dict:
    """One model on every labelled item, with the settings of the cross-validation (early stopping on an
    inner validation part, as in every fold)."""
    import torch

    from cytofm.eval.splits import inner_validation
    from cytofm.mil.config import MILTrainConfig
    from cytofm.mil.saved import save_weights
    from cytofm.mil.train import train_mil

    bags = [torch.from_numpy(b) for b in data.bags]
    itr, ival = inner_validation(data.y, seed, groups=data.groups)
    fitted = train_mil([bags[i] for i in itr], data.y[itr], [bags[i] for i in ival], data.y[ival],
                       len(data.classes), MILTrainConfig(epochs=epochs, lr=lr, seed=seed, model=model))
    name = f"models/{model}_refit.safetensors"
    save_weights(fitted, out / name)
    return {"file": name, "seed": seed, "n_items": len(data.y)}
