"""``cytofm benchmark``: encoders x tasks -> prepare, extract (cached), evaluate, one table.

Extraction is cached per task and encoder under ``OUT/cache`` (the store's per-item resume makes a
re-run reuse it). Each task's first encoder is the reference of paired comparisons: the difference in
balanced accuracy on the same out-of-fold items, with a paired bootstrap 95% CI.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from cytofm.config.loader import Section
from cytofm.utils.io import write_csv


class TaskConfig(Section):
    name: str
    data: str
    """A folder, manifest or prepared dataset (relative paths are relative to the benchmark YAML)."""
    label: str
    mode: Literal["image", "tiles"] = "image"
    prepare_preset: str = "default"
    """Preset used to tile plain images in ``tiles`` mode."""
    eval: Literal["probe", "mil"] = "probe"
    methods: list[str] = ["linear", "knn"]
    folds: int = Field(5, ge=2)
    seeds: list[int] = [0, 1, 2]
    group_column: str | None = None
    split_column: str | None = None
    exclude: list[str] = []
    epochs: int = 50
    boxes: str | None = None
    """MIL tasks: a folder of Pascal VOC XML files named like the sources; the ABMIL attention is scored
    against them (attention mass on the object and pointing game, with their chance levels)."""
    box_class: str = "WBC"


class BenchmarkConfig(Section):
    encoders: list[str]
    tasks: list[TaskConfig]
    batch_size: int = 64


def _slug(s: str) -> str:
    return re.sub(r"[^\w.-]+", "_", s).strip("_")[:80]


def _data_key(task: TaskConfig, data: Path) -> str:
    """Tasks on the same data, mode and preparation share one prepared set and one store per
    encoder (e.g. Herlev 7-class and normal/abnormal; ABMIL and a probe on the same bags). Stores keep
    every manifest column, so each task reads its own label column."""
    key = f"{data.resolve()}|{task.mode}|{task.prepare_preset if task.mode == 'tiles' else ''}"
    return f"{_slug(data.parent.name + '_' + data.stem)}_{task.mode}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def run_benchmark(cfg: BenchmarkConfig, base: Path, out: Path, progress=None, log=print) -> list[dict]:
    from cytofm.config.loader import build_config
    from cytofm.data.prepare import run_prepare
    from cytofm.data.prepare_config import PrepareConfig
    from cytofm.eval.metrics import METRICS, paired_difference
    from cytofm.eval.tasks import evaluate_mil, evaluate_probes, prepare_eval
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    rows, md, loc_md = [], [], []
    for task in cfg.tasks:
        data = Path(task.data) if Path(task.data).is_absolute() else (base / task.data)
        source = data
        if task.mode == "tiles":
            meta = {"label_column": task.label} if str(data).endswith(".csv") else {"labels_from_folders": data.is_dir()}
            pcfg = build_config(PrepareConfig, "prepare", task.prepare_preset, values={
                "metadata": meta, "output": {"qa_thumbnails": 0}})
            source = out / "cache" / _data_key(task, data) / "prepared"
            log(f"[{task.name}] preparing {data}")
            run_prepare([str(data)], source, pcfg, log=lambda m: None)
        refs: dict[str, dict] = {}
        for spec in cfg.encoders:
            store = out / "cache" / _data_key(task, data) / _slug(spec)
            log(f"[{task.name}] extracting with {spec}")
            enc = create_encoder(spec)
            run_extract(enc, source, task.mode, store, cfg.batch_size, label_column=task.label, workers=1,
                        log=lambda m: None, progress=progress)
            header = (store / "manifest.csv").read_text().splitlines()[0].split(",")
            label = task.label if task.label in header else "label"
            d, splits = prepare_eval(store, label, task.group_column, task.split_column, task.folds, task.seeds,
                                     task.exclude, log=log, warn=lambda m: log(f"warning: {m}"))
            ev_out = out / task.name / _slug(spec)
            ev_out.mkdir(parents=True, exist_ok=True)
            loc = None
            if task.eval == "mil":
                summaries = [evaluate_mil(d, splits, ev_out, task.epochs, progress=progress)]
                if task.boxes:
                    boxes = Path(task.boxes) if Path(task.boxes).is_absolute() else base / task.boxes
                    loc = _localisation(store, ev_out, boxes, task.box_class, task.seeds, log)
            else:
                summaries = evaluate_probes(d, splits, ev_out, task.methods, progress=progress)
            for s in summaries:
                row = {"task": task.name, "encoder": spec, "method": s["method"], "n_items": s["n_items"],
                       "n_splits": s["n_splits"]}
                for k in METRICS:
                    row[f"{k}_mean"] = round(s[k]["mean"], 4)
                    row[f"{k}_sd"] = round(s[k]["sd"], 4)
                    row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (round(v, 4) for v in s[k]["ci95"])
                ref = refs.setdefault(s["method"], {"spec": spec, **s["_oof"]})
                if ref["spec"] != spec:
                    common = [i for i in ref["ids"] if i in set(s["_oof"]["ids"])]
                    ia = {i: n for n, i in enumerate(s["_oof"]["ids"])}
                    ib = {i: n for n, i in enumerate(ref["ids"])}
                    a = s["_oof"]["proba"][[ia[i] for i in common]]
                    b = ref["proba"][[ib[i] for i in common]]
                    y = ref["y"][[ib[i] for i in common]]
                    diff, (lo, hi) = paired_difference(y, a, b, a.shape[1])
                    row.update({"vs": ref["spec"], "bacc_diff": round(diff, 4), "bacc_diff_ci_low": round(lo, 4),
                                "bacc_diff_ci_high": round(hi, 4)})
                if loc:
                    row.update({"attn_mass": round(loc["mass"], 4), "attn_mass_uniform": round(loc["chance_mass"], 4),
                                "pointing": round(loc["hit"], 4), "pointing_chance": round(loc["chance_hit"], 4),
                                "n_localised": int(loc["n"])})
                    loc_md.append(f"| {task.name} | {spec} | {loc['mass']:.3f} ({loc['chance_mass']:.3f}) | "
                                  f"{loc['hit']:.3f} ({loc['chance_hit']:.3f}) | {int(loc['n'])} |")
                rows.append(row)
                bacc = s["balanced_accuracy"]
                versus = (f"{row['bacc_diff']:+.3f} [{row['bacc_diff_ci_low']:+.3f}, {row['bacc_diff_ci_high']:+.3f}]"
                          if "bacc_diff" in row else "reference")
                md.append(f"| {task.name} | {spec} | {s['method']} | {bacc['mean']:.3f} +- {bacc['sd']:.3f} "
                          f"[{bacc['ci95'][0]:.3f}, {bacc['ci95'][1]:.3f}] | {s['macro_f1']['mean']:.3f} | "
                          f"{s['auroc']['mean']:.3f} | {versus} |")
    write_csv(out / "results.csv", rows)
    table = ("| task | encoder | method | balanced accuracy (mean +- sd [95% CI]) | macro-F1 | AUROC | "
             "vs first encoder (paired, [95% CI]) |\n|---|---|---|---|---|---|---|\n" + "\n".join(md) + "\n")
    if loc_md:
        table += ("\nABMIL attention against the annotated objects (out-of-fold attention, mean over items and seeds):\n\n"
                  "| task | encoder | attention mass on object (uniform attention) | pointing game (chance) | items |\n"
                  "|---|---|---|---|---|\n" + "\n".join(loc_md) + "\n")
    (out / "results.md").write_text(table)
    _plot(rows, out / "results.png")
    return rows


def _localisation(store: Path, ev_out: Path, boxes: Path, box_class: str, seeds, log) -> dict | None:
    """Mean localisation of each seed's out-of-fold ABMIL attention; heatmaps of a few items for seed 0."""
    import numpy as np

    from cytofm.viz.heatmaps import mil_heatmaps
    from cytofm.viz.localization import summarise

    if not boxes.is_dir():
        log(f"warning: boxes folder {boxes} not found; attention not scored")
        return None
    per_seed = []
    for k, seed in enumerate(seeds):
        f = ev_out / f"attention_{seed}.npz"
        if not f.is_file():
            continue
        with np.load(f) as z:
            att = {i: z[i] for i in z.files}
        scores = mil_heatmaps(store, att, ev_out / f"heatmaps_seed{seed}", boxes, box_class, limit=6 if k == 0 else 0,
                              log=log)
        if scores:
            per_seed.append(summarise(scores))
    if not per_seed:
        return None
    return {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not rows:
        return
    labels = [f"{r['task']}\n{r['method']}" for r in rows]
    groups = list(dict.fromkeys(labels))
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    w = 0.8 / len(encoders)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) * max(1, len(encoders) / 2)), 4), dpi=110)
    for k, e in enumerate(encoders):
        xs, ys, lo, hi = [], [], [], []
        for r, lab in zip(rows, labels, strict=True):
            if r["encoder"] == e:
                xs.append(groups.index(lab) + (k - (len(encoders) - 1) / 2) * w)
                ys.append(r["balanced_accuracy_mean"])
                lo.append(r["balanced_accuracy_mean"] - r["balanced_accuracy_ci_low"])
                hi.append(r["balanced_accuracy_ci_high"] - r["balanced_accuracy_mean"])
        ax.bar(xs, ys, w, yerr=np.clip([lo, hi], 0, None), capsize=3, label=e)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("balanced accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("cytofm benchmark")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
