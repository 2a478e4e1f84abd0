"""The benchmark's evaluation of feature stores (its schema: ``cytofm.eval.config``): every encoder of a task
on the same items and the same splits. The pipeline that prepares, extracts and draws
(``cytofm.pipeline.benchmark``) sits above this module; this one only evaluates stores.

Every encoder of a task is evaluated on the same items with the same splits (defined
on item ids, grouped by the task's group column and by near-duplicate images), so per-fold scores pair.
The comparisons the config claims get a paired interval and a Holm-adjusted p-value across the table
(``cytofm.eval.compare``); rows of encoders that saw the evaluation images in pretraining are marked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytofm.eval.config import TaskConfig
from cytofm.utils.hashing import digest_of
from cytofm.utils.io import slug, strict_json


@dataclass
class EncoderRun:
    spec: str  # as in the config
    resolved: str  # as resolved by the zoo (may hold a local path; never printed in tables)
    weights_hash: str
    store: Path
    summaries: list[dict] = field(default_factory=list)
    seen: float | None = None
    record: str = ""
    loc: dict | None = None


@dataclass
class TaskRun:
    task: TaskConfig
    runs: dict[str, EncoderRun]
    n_items: int = 0
    duplicates: dict = field(default_factory=dict)
    groups_from: str = ""
    folds_used: int = 0
    """Folds actually used (lowered below the task's ``folds`` when a class has fewer items or groups)."""


def evaluate_stores(task: TaskConfig, stores: dict[str, tuple[Path, str, str]], out: Path, progress=None,
                    log=print) -> TaskRun:
    """Evaluate every encoder's store of one task on the same items and the same splits (paths are resolved
    by the pipeline)."""
    from cytofm.eval.evaluate_store import evaluate_mil, evaluate_probes
    from cytofm.eval.pretraining_guard import check_encoder, pretraining_record_for
    from cytofm.eval.splits import ProtocolError, make_splits
    from cytofm.utils.display import display_name

    sets, group_col = _aligned_sets(task, stores, log)
    ref = next(iter(sets.values()))
    groups, groups_from, dup, hashes = _groups(task, ref, group_col, out / task.name, log)
    # only the guard reads them
    if any(pretraining_record_for(resolved) for _, resolved, _ in stores.values()):
        hashes = _source_hashes(next(iter(stores.values()))[0], ref.ids, hashes)
    try:
        splits = make_splits(ref.y, task.folds, tuple(task.seeds), groups, ref.fixed,
                             warn=lambda m: log(f"warning: {m}"), names=ref.classes)
    except ProtocolError as e:
        if "near-duplicates" not in groups_from:
            raise
        raise ProtocolError(f"[{task.name}] {e} (groups joined with near-duplicate images, see "
                            f"{task.name}/duplicates.csv; "
                            "`group_duplicates: false` turns that off)") from None
    _check_counts(task, ref, log)
    tr = TaskRun(task, {}, len(ref.y), dup, groups_from, len({sp.fold for sp in splits}))
    for spec, d in sets.items():
        d.groups = groups  # inner validation and the probe's inner CV use the same groups
        store, resolved, whash = stores[spec]
        run = EncoderRun(spec, resolved, whash, store)
        run.seen, run.record = check_encoder(resolved, hashes) if hashes is not None else (None, "")
        ev_out = out / task.name / slug(spec)
        ev_out.mkdir(parents=True, exist_ok=True)
        title = f"{display_name(spec)} on {task.name}"
        key = _evaluation_key(task, run, splits, d)
        run.summaries = _reuse(ev_out, key)
        if run.summaries is not None:
            log(f"[{task.name}] {spec}: evaluation unchanged, reused from {ev_out.name}/")
        else:
            # a run stopped half-way must not leave a key that points at a mix of old and new files
            (ev_out / EVALUATED).unlink(missing_ok=True)
            if task.eval == "mil":
                run.summaries = [evaluate_mil(d, splits, ev_out, task.epochs, progress=progress, title=title,
                                              model=task.model)]
            else:
                run.summaries = evaluate_probes(d, splits, ev_out, task.methods, progress=progress,
                                                title=title)
            (ev_out / EVALUATED).write_text(strict_json({"key": key,
                                                        "methods": [m["method"] for m in run.summaries]}))
        tr.runs[spec] = run
    return tr


EVALUATED = "evaluated.json"


def _evaluation_key(task: TaskConfig, run: EncoderRun, splits, data) -> str:
    """What an evaluation's result depends on: the task's settings, the encoder, the features and labels of
    the items themselves (a re-extracted image changes them even where the store's manifest does not), the
    exact folds and the cytofm version. A re-run with the same key reuses the finished evaluation."""
    from cytofm import __version__
    from cytofm.eval.cross_validation import ids_key

    ids = data.ids
    h = hashlib.sha256()
    for b in data.bags:
        h.update(np.ascontiguousarray(b).tobytes())
    folds = [(sp.seed, sp.fold, ids_key(ids[i] for i in sp.test), ids_key(ids[i] for i in sp.train))
             for sp in splits]
    return digest_of(__version__, task.model_dump(mode="json"), run.resolved, run.weights_hash, h.hexdigest(),
                     list(ids), data.y.tolist(), list(data.classes), folds)


def _reuse(ev_out: Path, key: str) -> list[dict] | None:
    from cytofm.eval.cross_validation import load_method

    f = ev_out / EVALUATED
    try:
        done = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if done.get("key") != key:
        return None
    summaries = [load_method(m, ev_out) for m in done.get("methods", [])]
    return summaries if summaries and all(s is not None for s in summaries) else None


def _aligned_sets(task: TaskConfig, stores, log) -> tuple[dict, str | None]:
    """Each store's labelled items, restricted to the items every store has, in id order; the group column."""
    from cytofm.eval.labelled_set import load_labelled_store

    sets, group = {}, None
    for spec, (store, _, _) in stores.items():
        header = (store / "manifest.csv").read_text().splitlines()[0].split(",")
        label = task.label if task.label in header else "label"
        group = task.group_column or next((c for c in task.group_if_present if c in header), None)
        sets[spec] = load_labelled_store(str(store), label, group, task.split_column, tuple(task.exclude),
                                         log=log)
    common = set.intersection(*(set(d.ids) for d in sets.values()))
    for spec, d in sets.items():
        if len(d.ids) != len(common):
            log(f"warning: [{task.name}] {spec} has {len(d.ids) - len(common)} item(s) the other encoders "
                "lack; compared on the common items")
        sets[spec] = d.subset([i for i, x in enumerate(d.ids) if x in common])
    return sets, group


def _groups(task: TaskConfig, ref, group_col: str | None, out: Path, log):
    """Split groups: the group column joined with near-duplicate images; the duplicate report."""
    from cytofm.data.provenance.duplicates import merge_groups
    from cytofm.data.provenance.hashing import hash_image
    from cytofm.eval.evaluate_store import duplicate_pairs

    base_groups, groups_from = ref.groups, group_col or ""
    paths = ref.paths or []
    if not paths or not all(p and Path(p).is_file() for p in paths):
        log(f"warning: [{task.name}] source images not found: no near-duplicate check")
        return base_groups, groups_from, {}, None
    hashes = [hash_image(p) for p in paths]
    pairs = duplicate_pairs(ref, hashes, out)
    dup = {"pairs": len(pairs), "items": len({k for p in pairs for k in (p.i, p.j)}),
           "cross_label": sum(ref.y[p.i] != ref.y[p.j] for p in pairs), "grouped": task.group_duplicates}
    if pairs:
        log(f"[{task.name}] {dup['pairs']} near-duplicate pair(s) over {dup['items']} items"
            + (" kept on one side of every split" if task.group_duplicates else " (not grouped)"))
    if task.group_duplicates and (pairs or base_groups is not None):
        groups = merge_groups(len(ref.ids), pairs, base_groups)
        groups_from = "+".join(x for x in (groups_from, "near-duplicates" if pairs else "") if x)
        return groups, groups_from, dup, hashes
    return base_groups, groups_from, dup, hashes


def _source_hashes(store: Path, ids: list[str], hashes):
    """Hashes for the pretraining guard: of the field each cell crop was cut from where the store records it
    (``source_image``), else the items' own. None stays None (no check possible) unless the sources are
    there (detected cells as items have no image of their own)."""
    import csv

    from cytofm.data.annotations.point_crops import SOURCE_COLUMN
    from cytofm.data.provenance.hashing import hash_image

    with open(store / "manifest.csv", newline="") as f:
        rows = {r["id"]: r.get(SOURCE_COLUMN, "") for r in csv.DictReader(f)}
    sources = [rows.get(i, "") for i in ids]
    if not all(sources) or not all(Path(p).is_file() for p in set(sources)):
        return hashes
    try:
        by_path = {p: hash_image(p) for p in sorted(set(sources))}
    except (OSError, ValueError):  # a field that cannot be read: the crops' own hashes, as for any other item
        return hashes
    return [by_path[p] for p in sources]


def _check_counts(task: TaskConfig, ref, log) -> None:
    if not task.expected_counts:
        return
    counts = {c: int((ref.y == k).sum()) for k, c in enumerate(ref.classes)}
    if counts != dict(task.expected_counts):
        log(f"warning: [{task.name}] items per class {counts}, expected {dict(task.expected_counts)}: "
            "not the published data set, or items were left out")
