"""``cytofm predict``: a model trained once (a `cytofm mil` folder) applied to new cases.

The input is prepared and embedded with the settings and the encoder the model records (or, given a
feature store, the store is checked to hold that encoder's features: another encoder, weights, readout or
mode is refused with the difference named, never mixed). The cross-validation models are applied as an
ensemble (mean probability and its spread over the members), or the refit model. An item whose source the
model was trained on, whose specimen it was trained on, or that the encoder saw in pretraining is flagged,
and left out of the metrics unless asked: a number on seen cases measures memory, not transfer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytofm.eval.config import PREDICT_USES
from cytofm.eval.saved_model import ModelFolderError, read_model_json, select_method
from cytofm.features.store import IDENTITY_KEYS, STORE_FILE, item_attrs, load_store, read_item, store_identity
from cytofm.pipeline.cell_counts import (
    cell_rows,
    classify_cells,
    count_lines,
    count_rows,
    empty_fields,
    holds_single_cells,
    reads_single_cells,
    write_cell_geojson,
)
from cytofm.utils.io import write_csv


@dataclass
class PredictResult:
    out: Path
    n_items: int
    n_flagged: int
    metrics: dict | None  # with labels: on the items not flagged (or all, ``include_seen``)
    lines: list[str]
    seconds: dict[str, float]  # prepare, extract, apply (with the tables), heatmaps


def run_predict(model_dir: Path, input: Path, out: Path, use: str = "ensemble", include_seen: bool = False,
                heatmaps: int = 12, progress=None, log=print,
                method: str | None = None, device: str = "auto") -> PredictResult | None:
    """Predict every item of ``input`` into ``out``. Under torchrun the extraction is shared across the
    processes as ``extract`` shares it; rank 0 applies the model (None elsewhere)."""
    import torch.distributed as dist

    model_dir, input, out = Path(model_dir), Path(input), Path(out)
    rec = select_method(read_model_json(model_dir), method)
    members = _members(rec, use)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {"prepare": 0.0, "extract": 0.0}
    store = input if (input / STORE_FILE).is_file() else _embed(rec, input, out, progress, log, seconds,
                                                                device)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return None
    t0 = time.perf_counter()
    check_store(rec, store)
    rows = load_store(store)
    if not rows:
        raise ModelFolderError(f"{store}: no item to predict")
    if reads_single_cells(rec):
        table, attention, counts = _apply_cells(model_dir, rec, members, rows, use, store, input, out)
    else:
        probs, attention = _apply(model_dir, rec, members, rows)
        table, counts = _prediction_rows(rec, rows, probs, use), None
    write_csv(out / "predictions.csv", table)
    write_csv(out / "specimens.csv", specimen_rows(table, rec["classes"]))
    if attention is not None:
        _write_attention(out / "attention.h5", rows, attention)
        _write_geojson(out / "geojson", rows, attention, table, rec["classes"])
    extra = (count_lines(counts, rec["classes"]) if counts is not None else []) + _skipped_lines(out)
    metrics, lines = _summary(rec, table, include_seen, out, len(members), extra)
    seconds["apply"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if heatmaps > 0 and attention is not None:
        _previews(rows, attention, out / "heatmaps", heatmaps, log)
    seconds["heatmaps"] = time.perf_counter() - t0
    flagged = sum(1 for r in table if r["excluded"])
    return PredictResult(out, len(table), flagged, metrics, lines, seconds)


def _skipped_lines(out: Path) -> list[str]:
    """The sources prepare or extract left out (blank glass, no cell found, an unreadable file), which
    have no prediction: how many, and where the reasons are."""
    from cytofm.utils.io import read_csv

    lines = []
    for stage in ("prepared", "features"):
        p = out / stage / "skipped.csv"
        rows = read_csv(p) if p.is_file() else []
        if rows:
            name = "prepare" if stage == "prepared" else "extract"
            lines.append(f"{len(rows)} source(s) left out at {name} and not predicted (e.g. "
                         f"{rows[0]['path']}: {rows[0]['reason']}); all in {p}")
    return lines


def _members(rec: dict, use: str) -> list[dict]:
    if use not in PREDICT_USES:
        raise ModelFolderError(f"--use must be one of {', '.join(PREDICT_USES)}, not '{use}'")
    if use == "refit":
        if not rec.get("refit"):
            raise ModelFolderError("this model folder has no refit model (train it with "
                                   "`cytofm mil --refit`)")
        return [rec["refit"]]
    return rec["members"]


def check_store(rec: dict, store: Path) -> None:
    """Refuse a store whose features another encoder (weights, readout, mode, input size) produced."""
    want = {k: rec["features"]["store"].get(k) for k in IDENTITY_KEYS}
    have = store_identity(store)
    if have is None:
        raise ModelFolderError(f"{store}: no {STORE_FILE}; extract the features with this cytofm version")
    diff = [f"{k}: {have.get(k)!r} in the store, {want[k]!r} in the model" for k in IDENTITY_KEYS
            if str(have.get(k)) != str(want[k])]
    spec_here = json.loads((store / STORE_FILE).read_text()).get("encoder_spec", "")
    spec_model = rec["features"]["store"].get("encoder_spec", "")
    if _readout(spec_here) != _readout(spec_model):  # cls and mean readouts have the same size
        diff.append(f"readout: {_readout(spec_here)!r} in the store, {_readout(spec_model)!r} in the model")
    if diff:
        raise ModelFolderError(f"{store} holds features the model was not trained on ({'; '.join(diff)}); "
                               "give the images instead, and predict extracts them with the model's encoder")


def _readout(spec: str) -> str:
    return spec.partition("#pool=")[2] or "cls"


def _embed(rec: dict, input: Path, out: Path, progress, log, seconds: dict, device: str = "auto") -> Path:
    """Prepare (tiles mode) and extract ``input`` with the recorded settings and encoder into ``out``."""
    import torch.distributed as dist

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.prepared import is_prepared_dir
    from cytofm.data.prepare.run import run_prepare
    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    feats = rec["features"]
    ident = feats["store"]
    if not ident.get("encoder_spec"):
        raise ModelFolderError("the model records no encoder (its features came from a store without "
                               "store.json): give a feature store of the same encoder as --input")
    enc = create_encoder(ident["encoder_spec"])
    if enc.weights_hash != ident["weights_hash"]:
        raise ModelFolderError(f"encoder {ident['encoder_spec']} here has weights {enc.weights_hash}, the "
                               f"model was trained on features of weights {ident['weights_hash']}: point the "
                               "spec to the same weights file")
    source, t0 = input, time.perf_counter()
    prepared_modes = ("tiles", "cells")
    if ident["mode"] in prepared_modes and is_prepared_dir(input) and feats.get("prepare"):
        check_prepared(feats["prepare"], input)
    if ident["mode"] in prepared_modes and not is_prepared_dir(input):
        if not feats.get("prepare"):
            raise ModelFolderError("the model records no prepare settings (the prepared folder its features "
                                   "came from was not found when it was saved): prepare the input with them "
                                   "and give the prepared folder as --input")
        pcfg = build_config(PrepareConfig, values=feats["prepare"])
        distributed = dist.is_available() and dist.is_initialized()
        if not distributed or dist.get_rank() == 0:  # one process prepares, the others wait for it
            run_prepare([str(input)], out / "prepared", pcfg, progress=progress, log=log)
        if distributed:
            dist.barrier()
        source = out / "prepared"
    seconds["prepare"], t0 = time.perf_counter() - t0, time.perf_counter()
    extract = feats.get("extract") or {}
    cfg = ExtractConfig(input=str(source), mode=ident["mode"], out=str(out / "features"),
                        tta=bool(ident["tta"]), batch_size=int(extract.get("batch_size", 64)),
                        workers=int(extract.get("workers", 1)), device=device,
                        cell_crop_um=extract.get("cell_crop_um"))
    run_extract(enc, cfg, progress=progress, log=log)
    seconds["extract"] = time.perf_counter() - t0
    return out / "features"


def _differences(want: dict, got: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(want) | set(got)):
        a, b = want.get(k), got.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {b!r} there, {a!r} in the model")
    return out


def check_prepared(recorded: dict, folder: Path) -> None:
    """A prepared folder given as input must have been tiled as the model's features were (patch size,
    resolution, foreground): other patches would be silently other instances. Refused with the settings
    that differ named."""
    import yaml

    try:
        here = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ModelFolderError(f"{folder}/config.yaml: cannot read the prepare settings ({e})") from None
    diff = _differences(recorded, {k: here.get(k) for k in recorded})
    if diff:
        raise ModelFolderError(f"{folder}: prepared with other settings than the model's features: "
                               + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else "")
                               + "; give the unprepared images (predict prepares them as recorded) or "
                                 "re-prepare with the model's settings")


def _apply(model_dir: Path, rec: dict, members: list[dict], rows: list[dict]):
    """Each member's probabilities (M, N, C), and for MIL models the members' mean attention per item
    (None for probes, which read an item's mean-pooled features)."""
    import torch

    from cytofm.mil.saved import ensemble_predict, load_model

    bags = []
    for r in rows:
        f, _, _ = read_item(r["h5"])
        if len(f) == 0:
            raise ModelFolderError(f"{r['h5']}: item {r['id']} has no instance to predict from")
        if f.shape[1] != rec["feature_dim"]:
            raise ModelFolderError(f"{r['h5']}: features of size {f.shape[1]}, the model takes "
                                   f"{rec['feature_dim']}")
        bags.append(torch.from_numpy(f.astype(np.float32)))
    if rec["kind"] == "probe":
        from cytofm.eval.saved_probe import load_probe, probe_proba

        x = np.stack([b.numpy().mean(0) for b in bags])
        method = rec["default_method"]
        return np.stack([probe_proba(load_probe(method, model_dir / m["file"]), x, len(rec["classes"]))
                         for m in members]), None
    models = [load_model(model_dir / m["file"], rec["architecture"]) for m in members]
    return ensemble_predict(models, bags)


def _apply_cells(model_dir: Path, rec: dict, members: list[dict], rows: list[dict], use: str, store: Path,
                 input: Path, out: Path) -> tuple:
    """A cell classifier applied to every cell of the input: one prediction row per cell (flagged as its
    field is), counts by class per field in ``cell_counts.csv``, the classified cells as QuPath GeoJSON."""
    from cytofm.data.prepare.prepared import is_prepared_dir
    from cytofm.features.store import prepared_folder

    cells = cell_rows(store, rows)
    if not cells:
        raise ModelFolderError(f"{store}: no cell to classify")
    probs = classify_cells(model_dir, rec, members, cells)
    flags = leakage_flags(rec, rows, use)
    label = rec["training"].get("label")
    single = holds_single_cells(store)  # then the items' labels are the cells' own
    pseudo = [{**{k: v for k, v in rows[c["item"]].items() if single or k != label}, "id": c["id"]}
              for c in cells]
    table = _prediction_rows(rec, pseudo, probs, use, [dict(flags[c["item"]]) for c in cells])
    for t, c in zip(table, cells, strict=True):
        t.update({"field": c["field"], "x": c["x"], "y": c["y"]})
    prepared = (out / "prepared" if (out / "prepared" / "cells").is_dir()
                else input if is_prepared_dir(input) else prepared_folder(store))
    counts = count_rows(table, rec["classes"], [] if single else empty_fields(prepared, rows))
    write_csv(out / "cell_counts.csv", counts)
    write_cell_geojson(out / "geojson", prepared, rows, table, rec["classes"])
    return table, None, counts


def _prediction_rows(rec: dict, rows: list[dict], probs: np.ndarray, use: str,
                     flags: list[dict] | None = None) -> list[dict]:
    classes, label = rec["classes"], rec["training"].get("label")
    mean, sd = probs.mean(0), probs.std(0)
    flags = leakage_flags(rec, rows, use) if flags is None else flags
    op = rec.get("operating_point")
    table = []
    for k, r in enumerate(rows):
        row = {"id": r["id"], "path": r.get("path", ""),
               "specimen": r.get(rec["training"].get("group_column") or "specimen", r.get("specimen", ""))}
        row.update({f"p_{c}": round(float(v), 5) for c, v in zip(classes, mean[k], strict=True)})
        row.update({f"sd_{c}": round(float(v), 5) for c, v in zip(classes, sd[k], strict=True)})
        row["pred"] = classes[int(mean[k].argmax())]
        if op and op.get("threshold") is not None:
            pos = classes.index(op["positive_class"])
            row["pred_at_threshold"] = classes[pos] if mean[k][pos] >= op["threshold"] else classes[1 - pos]
        truth = r.get(label, "").strip() if label else ""
        row["label"], row["correct"] = truth, (truth == row["pred"]) if truth else ""
        checked = flags[k].pop("checked_by")
        row.update(flags[k])
        row["excluded"] = any(flags[k].values())
        row["checked_by"] = checked
        table.append(row)
    return table


def trained_items(rec: dict, use: str) -> list[dict]:
    """The training items of what is applied: the refit model saw every labelled item, the ensemble the
    items some fold x seed model was trained on (a fixed split's test part is not among them)."""
    items = rec["trained_on"]["items"]
    return items if use == "refit" else [i for i in items if i.get("in_ensemble", True)]


def leakage_flags(rec: dict, rows: list[dict], use: str = "ensemble") -> list[dict]:
    """Per item: its source among the model's training items (the same bytes, or a pHash within
    ``SEEN_BITS`` of one: a re-encoded copy), its specimen among the training specimens, its source in the
    encoder's pretraining record. The hashes come from the store, where extraction wrote them."""
    from cytofm.data.provenance.hashing import hamming, phash_bits
    from cytofm.eval.pretraining_guard import SEEN_BITS, pretraining_record_for, seen_in_pretraining

    items = trained_items(rec, use)
    shas = {i["source_sha256"] for i in items if i["source_sha256"]}
    trained_ph = [i["source_phash"] for i in items if i.get("source_phash")]
    specimens, group = {i["specimen"] for i in items if i["specimen"]}, rec["training"].get("group_column")
    hashes = [_image_hash(r) for r in rows]
    near = np.zeros(len(rows), bool)
    with_ph = [k for k, h in enumerate(hashes) if h is not None and h.phash]
    if trained_ph and with_ph:
        d = hamming(phash_bits([hashes[k].phash for k in with_ph]), phash_bits(trained_ph))
        near[with_ph] = (d <= SEEN_BITS).any(1)
    seen = np.zeros(len(rows), bool)
    record_path = pretraining_record_for(rec["features"]["store"].get("encoder_spec", ""))
    known = [k for k, h in enumerate(hashes) if h is not None]
    if record_path is not None and known:
        from cytofm.data.provenance.pretraining_record import read_record

        seen[known] = seen_in_pretraining([hashes[k] for k in known], read_record(record_path))
    return [{"trained_on": bool(h is not None and h.sha256 in shas) or bool(near[k]),
             "specimen_trained_on": bool(group and r.get(group) and r[group] in specimens),
             "seen_in_pretraining": bool(seen[k]),
             "checked_by": "bytes" if h is None or not h.phash else "bytes+phash"}
            for k, (r, h) in enumerate(zip(rows, hashes, strict=True))]


def _image_hash(row: dict):
    """The content hash and pHash the extraction stored for an item's source, or None without a SHA-256.
    The pHash is '' for a whole slide (pools hold fields and patches) and for a store written before
    extraction stored it; such items are checked by their bytes alone."""
    from cytofm.data.provenance.hashing import ImageHash

    a = item_attrs(row["h5"]) or {}
    sha = str(a.get("source_sha256", ""))
    return ImageHash(sha, str(a.get("source_phash", "")), np.zeros(0, np.float32)) if sha else None


def specimen_rows(table: list[dict], classes: list[str]) -> list[dict]:
    """A specimen's items pooled: the mean of their probabilities, and how many there are."""
    groups: dict[str, list[dict]] = {}
    for r in table:
        if r["specimen"]:
            groups.setdefault(str(r["specimen"]), []).append(r)
    out = []
    for s, items in groups.items():
        p = np.array([[r[f"p_{c}"] for c in classes] for r in items]).mean(0)
        out.append({"specimen": s, "n_items": len(items), **{f"p_{c}": round(float(v), 5)
                                                              for c, v in zip(classes, p, strict=True)},
                    "pred": classes[int(p.argmax())]})
    return out


def _write_attention(path: Path, rows: list[dict], attention: list[np.ndarray]) -> None:
    """Each item's attention over its instances (the members' mean), with their coordinates."""
    import h5py

    from cytofm.utils.io import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for r, a in zip(rows, attention, strict=True):
            g = f.create_group(r["id"])
            g.create_dataset("attention", data=np.asarray(a, np.float32))
            g.create_dataset("coords", data=read_item(r["h5"])[1])


def _previews(rows: list[dict], attention: list[np.ndarray], folder: Path, limit: int, log) -> None:
    """Attention over the sources of ``limit`` items spread over the input (the GeoJSON has every item)."""
    from cytofm.viz.heatmaps import attention_preview_png

    picks = sorted(set(np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int).tolist()))
    for k in picks:
        r = rows[k]
        attrs = item_attrs(r["h5"]) or {}
        size0 = int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0)
        if r.get("path"):
            attention_preview_png(r["path"], read_item(r["h5"])[1], size0, attention[k],
                                  folder / f"{r['id']}_attention.png", log=log)


def _write_geojson(folder: Path, rows: list[dict], attention: list[np.ndarray], table: list[dict],
                   classes: list[str]) -> None:
    """``<id>.geojson`` per item for review in QuPath: each instance a tile with its attention, and the
    item's prediction as an annotation with every class's probability."""
    from cytofm.viz.heatmaps import attention_geojson

    for r, a, t in zip(rows, attention, table, strict=True):
        coords = read_item(r["h5"])[1]
        attrs = item_attrs(r["h5"]) or {}
        size0 = int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0)
        if size0 and len(coords):
            attention_geojson(coords, size0, a, folder / f"{r['id']}.geojson",
                              prediction=(t["pred"], {c: t[f"p_{c}"] for c in classes}))


def _summary(rec: dict, table: list[dict], include_seen: bool, out: Path, n_models: int,
             extra: list[str] = ()) -> tuple:
    import json

    from cytofm.eval.metrics import bootstrap_ci, classification_metrics

    classes = rec["classes"]
    flagged = sum(1 for r in table if r["excluded"])
    lines = [f"{len(table)} item(s) predicted with {n_models} model(s); {flagged} flagged as seen "
             f"(trained on, same specimen, or in the encoder's pretraining)"
             + ("" if not flagged else
                (", included in the metrics" if include_seen else ", left out of the metrics"))]
    group = rec["training"].get("group_column")
    if group and not any(r["specimen"] for r in table):
        lines.append(f"specimen leakage not checked: the input has no '{group}' column (the model's "
                     "training specimens are in model.json)")
    by_bytes = sum(1 for r in table if r["checked_by"] == "bytes")
    if by_bytes:
        lines.append(f"{by_bytes} item(s) checked for leakage by their bytes only, not for re-encoded copies "
                     "(no pHash in the store: a whole slide, or features extracted by an earlier cytofm)")
    scored = [r for r in table if r["label"] in classes and (include_seen or not r["excluded"])]
    metrics = None
    if scored:
        y = np.array([classes.index(r["label"]) for r in scored])
        p = np.array([[r[f"p_{c}"] for c in classes] for r in scored])
        metrics = {k: {"value": v, "ci95": list(bootstrap_ci(y, p, len(classes)).get(k, (np.nan, np.nan)))}
                   for k, v in classification_metrics(y, p, len(classes)).items()}
        ba = metrics.get("balanced_accuracy")
        if ba:
            lines.append(f"balanced accuracy {ba['value']:.3f} [{ba['ci95'][0]:.3f}, {ba['ci95'][1]:.3f}] on "
                         f"{len(scored)} labelled item(s) (95% item bootstrap)")
    (out / "summary.json").write_text(json.dumps({"n_items": len(table), "n_flagged": flagged,
                                                  "include_seen": include_seen, "metrics": metrics,
                                                  "operating_point": rec.get("operating_point")}, indent=2))
    lines += list(extra)
    (out / "summary.md").write_text("# Predictions\n\n" + "".join(f"- {ln}\n" for ln in lines))
    return metrics, lines
