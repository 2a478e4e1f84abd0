"""Evaluate one feature store with the registered probes or MIL models (shared by `probe`, `mil` and
`benchmark`). Each finished fold x seed is kept as it finishes (``cytofm.eval.fold_records``), so a stopped
run resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cytofm.eval.cross_validation import run_method
from cytofm.eval.fold_records import RECORDS, FoldRecords, finished, mark_finished, store_key
from cytofm.eval.labelled_set import LabelledSet, load_labelled_store
from cytofm.eval.splits import ProtocolError, make_splits


def prepare_eval(features: str | Path, label: str, group_column=None, split_column=None, folds: int = 5,
                 seeds=(0, 1, 2), exclude=(), log=print, warn=print, group_duplicates: bool = True,
                 out: Path | None = None):
    """The labelled items and their splits. ``group_duplicates``: near-duplicate source images are kept on
    one side of every split, as the benchmark keeps them (:func:`near_duplicate_groups`; the pairs in
    ``out/duplicates.csv``); the items' own groups (``data.groups``, the specimens) stay as they are."""
    data = load_labelled_store(str(features), label, group_column, split_column, tuple(exclude), log=log)
    groups, merged = data.groups, False
    if group_duplicates:
        groups, merged = near_duplicate_groups(data, out, log=log, warn=warn)
    try:
        splits = make_splits(data.y, folds, tuple(seeds), groups, data.fixed, warn=warn, names=data.classes)
    except ProtocolError as e:
        if not merged:
            raise
        where = f" (see {out / 'duplicates.csv'})" if out is not None else ""
        raise ProtocolError(f"{e} (groups joined with near-duplicate images{where}; "
                            "--no-group-duplicates turns that off)") from None
    return data, splits


def duplicate_pairs(data: LabelledSet, hashes: list, out: Path | None = None, items=None) -> list:
    """Near-duplicate pairs of the items' source images (``cytofm.data.provenance.duplicates``), written to
    ``OUT/duplicates.csv`` with their labels (the report ``probe``, ``mil`` and ``benchmark`` share).
    ``items``: the items ``hashes`` are of, when not all (the pairs are given by the items' own indices)."""
    from cytofm.data.provenance.duplicates import Pair, near_duplicate_pairs
    from cytofm.utils.io import write_csv

    pairs = near_duplicate_pairs(hashes)
    if items is not None:
        pairs = [Pair(items[p.i], items[p.j], p.bits, p.mad) for p in pairs]
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(Path(out) / "duplicates.csv",
                  [{"id_a": data.ids[p.i], "id_b": data.ids[p.j], "phash_bits": p.bits,
                    "thumb_mad": round(p.mad, 2), "label_a": data.classes[data.y[p.i]],
                    "label_b": data.classes[data.y[p.j]]} for p in pairs],
                  ["id_a", "id_b", "phash_bits", "thumb_mad", "label_a", "label_b"])
    return pairs


def near_duplicate_groups(data: LabelledSet, out: Path | None = None, log=print,
                          warn=print) -> tuple[np.ndarray | None, bool]:
    """(split groups, whether near-duplicates were joined into them): the items' groups joined with their
    near-duplicate source images (``cytofm.data.provenance.duplicates``, the benchmark's rule). Items
    without a source image of their own (cells of a field) are not checked, nor sources that are not plain
    images (:func:`plain_images`); source images that are gone or unreadable are said, and the items' own
    groups kept. The rule compares 32x32 thumbnails besides the pHash the store keeps (``source_phash``),
    so the images are decoded here."""
    from cytofm.data.provenance.duplicates import merge_groups
    from cytofm.data.provenance.hashing import hash_image
    from cytofm.data.sources.image_io import ImageReadError

    paths = data.paths or []
    if not any(paths):
        return data.groups, False
    missing = [p for p in paths if not p or not Path(p).is_file()]
    if missing:
        warn(f"near-duplicates not checked: {len(missing)} source image(s) not found (e.g. "
             f"{missing[0] or 'an item without one'})")
        return data.groups, False
    images = plain_images(paths, log)
    if len(images) < 2:
        return data.groups, False
    try:
        hashes = [hash_image(paths[k]) for k in images]
    except (OSError, ValueError, ImageReadError) as e:
        warn(f"near-duplicates not checked: a source image could not be read ({str(e).splitlines()[0]})")
        return data.groups, False
    pairs = duplicate_pairs(data, hashes, out, images)
    if not pairs:
        return data.groups, False
    items = len({k for p in pairs for k in (p.i, p.j)})
    log(f"{len(pairs)} near-duplicate pair(s) over {items} items kept on one side of every split"
        + (" (duplicates.csv)" if out is not None else ""))
    return merge_groups(len(data.ids), pairs, data.groups), True


OTHER_SOURCES = {"slide": "whole slide(s)", "zstack": "z-stack(s)", "tar": "tar shard(s)"}


def plain_images(paths: list[str], log=print) -> list[int]:
    """The items whose source is a plain image (input kind "image"), the only sources the near-duplicate
    rule is made for: a whole slide, a z-stack or a tar shard is not one picture to decode whole and compare
    (most MIL stores are of those), so the others are said in one note rather than read."""
    from collections import Counter

    from cytofm.data.sources.kinds import kind_of

    kinds = [kind_of(p) or Path(p).suffix.lower().lstrip(".") for p in paths]
    others = Counter(k for k in kinds if k != "image")
    if others:
        log("near-duplicates are checked between plain images only; "
            + ", ".join(f"{n} {OTHER_SOURCES.get(k, f'.{k} file(s)' if k else 'file(s) of no known kind')}"
                        for k, n in sorted(others.items())) + " not checked")
    return [i for i, k in enumerate(kinds) if k == "image"]


def split_groups(sp, data: LabelledSet):
    """The groups an inner cut of ``sp``'s training part keeps whole (those of the split, else the items')."""
    return sp.groups if getattr(sp, "groups", None) is not None else data.groups


def evaluate_probes(data: LabelledSet, splits, out: Path, methods=("linear", "knn"), knn_k: int = 20,
                    shots: int = 5, progress=None, title: str = "", save_models: bool = False,
                    log=None) -> list[dict]:
    """Each probe (names of ``cytofm.eval.probe_registry.PROBES``) over the splits; ``save_models``: every
    fold x seed model of the saved probes (linear, kNN) is written to ``out/models/`` (listed in each
    summary's ``_members``) for ``cytofm predict``. Folds finished by an earlier run of the same settings
    are reused (said through ``log``)."""
    from cytofm.eval.probe_registry import PROBES, make_probe

    bad = [m for m in methods if m not in PROBES]
    if bad:
        raise ValueError(f"unknown probe method(s) {bad}; valid: {', '.join(PROBES)}")
    x, n_c = data.pooled(), len(data.classes)
    members: dict[str, list[dict]] = {m: [] for m in methods}
    records: list[FoldRecords] = []

    def fold_method(m: str):
        probe, keep = make_probe(m, knn_k, shots), save_models and PROBES.entry(m).saved
        rec = FoldRecords(out, probe.result_name, store_key(data, "probe", m, knn_k, shots), data.ids)
        records.append(rec)

        def run(tr, te, sp):
            name = f"models/{m}_seed{sp.seed}_fold{sp.fold}.safetensors"

            def fit():
                g = split_groups(sp, data)
                fitted = probe.fit(x[tr], data.y[tr], sp.seed, g[tr] if g is not None else None)
                if keep:
                    probe.save(fitted, out / name)
                return probe.proba(fitted, x[te], n_c), None

            proba, _ = rec.run(sp, fit, needs=[out / name] if keep else ())
            if keep:
                members[m].append({"file": name, "seed": int(sp.seed), "fold": int(sp.fold)})
            return proba, None
        return probe.result_name, run

    # one BLAS thread: these problems are small (hundreds x hundreds), and threaded BLAS made every
    # logistic-regression fit 10-20x slower on this 2-core machine (measured)
    with threadpool_limits(1):
        summaries = [run_method(name, data, splits, fn, out, progress, title)
                     for name, fn in map(fold_method, methods)]
    for m, s, rec in zip(methods, summaries, records, strict=True):
        s["_members"] = members[m]
        s["_trained"] = trained_by_some_split(splits, len(data.y))
        s["_groups"] = fold_groups(splits, data)
        rec.note(log)
    return summaries


def trained_by_some_split(splits, n: int) -> np.ndarray:
    """(n,) bool: the items some fold x seed model was trained on (k-fold: all of them; a fixed split: its
    train part), which are the items an ensemble of those models has seen."""
    seen = np.zeros(n, bool)
    for sp in splits:
        seen[sp.train] = True
    return seen


def fold_groups(splits, data: LabelledSet) -> np.ndarray | None:
    """The groups the folds kept whole (the items' joined with their near-duplicates, as
    :func:`prepare_eval` made them): what a refit on every item keeps whole in its own inner cuts."""
    return split_groups(splits[0], data) if len(splits) else data.groups


def mil_threads(data: LabelledSet, cfg, threads: int | None = None, log=None):
    """The torch threads for training ``cfg`` on ``data``'s bags (``cytofm.mil.threads``), as a context."""
    from cytofm.mil.threads import sized_threads, step_work

    work = step_work([len(b) for b in data.bags], data.bags[0].shape[1], cfg.hidden, cfg.batch_size,
                      cfg.model)
    return sized_threads(work, threads, log)


def evaluate_mil(data: LabelledSet, splits, out: Path, epochs: int = 50, lr: float = 2e-4, progress=None,
                 title: str = "", model: str = "abmil", save_models: bool = False, threads: int | None = None,
                 log=None) -> dict:
    """``model`` (a name of ``cytofm.mil.registry``) over the splits; its name is the method's name in the
    tables and files (``folds_abmil.csv``, ``attention_<seed>.npz``). ``save_models``: every fold x seed
    model is written to ``out/models/`` (listed in ``summary["_members"]``) for ``cytofm predict``. Torch's
    threads are sized to the model (``threads`` overrides); folds finished by an earlier run of the same
    settings are reused; both said through ``log``."""
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
    base = MILTrainConfig(epochs=epochs, lr=lr, model=model)
    records = FoldRecords(out, model, store_key(data, "mil", {**vars(base), "seed": None}), data.ids)

    def method(tr, te, sp):
        name = f"models/{model}_seed{sp.seed}_fold{sp.fold}.safetensors"

        def fit():
            g = split_groups(sp, data)
            itr, ival = inner_validation(data.y[tr], sp.seed, groups=g[tr] if g is not None else None)
            cfg = MILTrainConfig(epochs=epochs, lr=lr, seed=sp.seed, model=model)
            fitted = train_mil([bags[i] for i in tr[itr]], data.y[tr[itr]], [bags[i] for i in tr[ival]],
                               data.y[tr[ival]], n_c, cfg)
            if save_models:
                save_weights(fitted, out / name)
            return predict(fitted, [bags[i] for i in te])

        proba, attn = records.run(sp, fit, needs=[out / name] if save_models else ())
        if save_models:
            members.append({"file": name, "seed": int(sp.seed), "fold": int(sp.fold)})
        for i, a in zip(te, attn, strict=True):
            attention.setdefault(sp.seed, {})[data.ids[i]] = a
        return proba, attn

    MIL_MODELS.get(model)  # an unknown name is refused before any fitting
    with mil_threads(data, base, threads, log):
        summary = run_method(model, data, splits, method, out, progress, title)
    records.note(log)
    for seed, d in attention.items():
        np.savez_compressed(out / f"attention_{seed}.npz", **d)
    summary["_members"] = members
    summary["_trained"] = trained_by_some_split(splits, len(data.y))
    summary["_groups"] = fold_groups(splits, data)
    return summary


def refit_probe(data: LabelledSet, out: Path, method: str, knn_k: int = 20, seed: int = 0,
                groups: np.ndarray | None = None) -> dict:
    """One probe on every labelled item, chosen as in every fold (linear: C by the same inner CV, on the
    folds' ``groups``: :func:`fold_groups`, default the items'); reused when an earlier run of the same
    settings finished it."""
    from cytofm.eval.probe_registry import make_probe

    probe = make_probe(method, knn_k)
    groups = data.groups if groups is None else groups
    name = f"models/{method}_refit.safetensors"
    key = store_key(data, "probe refit", method, knn_k, seed, _listed(groups))
    marker = out / RECORDS / f"{method}_refit.key"
    if not finished(marker, key, [out / name]):
        probe.save(probe.refit(data.pooled(), data.y, seed, groups), out / name)
        mark_finished(marker, key)
    return {"file": name, "seed": seed, "n_items": len(data.y)}


def refit_mil(data: LabelledSet, out: Path, epochs: int, lr: float, model: str, seed: int = 0,
              threads: int | None = None, groups: np.ndarray | None = None) -> dict:
    """One model on every labelled item, with the settings of the cross-validation (early stopping on an
    inner validation part that keeps the folds' ``groups`` whole, :func:`fold_groups`, default the items',
    as in every fold); reused when an earlier run of the same settings finished it."""
    import torch

    from cytofm.eval.splits import inner_validation
    from cytofm.mil.config import MILTrainConfig
    from cytofm.mil.saved import save_weights
    from cytofm.mil.train import train_mil

    cfg = MILTrainConfig(epochs=epochs, lr=lr, seed=seed, model=model)
    name = f"models/{model}_refit.safetensors"
    groups = data.groups if groups is None else groups
    key = store_key(data, "mil refit", vars(cfg), _listed(groups))
    marker = out / RECORDS / f"{model}_refit.key"
    if not finished(marker, key, [out / name]):
        bags = [torch.from_numpy(b) for b in data.bags]
        itr, ival = inner_validation(data.y, seed, groups=groups)
        with mil_threads(data, cfg, threads):
            fitted = train_mil([bags[i] for i in itr], data.y[itr], [bags[i] for i in ival], data.y[ival],
                               len(data.classes), cfg)
        save_weights(fitted, out / name)
        mark_finished(marker, key)
    return {"file": name, "seed": seed, "n_items": len(data.y)}


def _listed(groups: np.ndarray | None) -> list[str] | None:
    """Groups as a key reads them (a refit of other groups is another refit)."""
    return None if groups is None else [str(g) for g in groups]
