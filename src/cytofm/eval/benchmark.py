"""``cytofm benchmark``: encoders x tasks -> prepare, extract (cached), evaluate, one table.

Extraction is cached per task and encoder under ``OUT/cache`` (the store's per-item resume makes a
re-run reuse it). Each task's first encoder is the reference of paired comparisons: the difference in
balanced accuracy on the same out-of-fold items, with a paired bootstrap 95% CI.
"""

from __future__ import annotations

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


class BenchmarkConfig(Section):
    encoders: list[str]
    tasks: list[TaskConfig]
    batch_size: int = 64


def _slug(s: str) -> str:
    return re.sub(r"[^\w.-]+", "_", s).strip("_")[:80]


def run_benchmark(cfg: BenchmarkConfig, base: Path, out: Path, progress=None, log=print) -> list[dict]:
    from cytofm.config.loader import build_config
    from cytofm.data.prepare import run_prepare
    from cytofm.data.prepare_config import PrepareConfig
    from cytofm.eval.metrics import METRICS, paired_difference
    from cytofm.eval.tasks import evaluate_mil, evaluate_probes, prepare_eval
    from cytofm.features.extract import run_extract
    from cytofm.models.zoo import create_encoder

    rows, md = [], []
    for task in cfg.tasks:
        data = Path(task.data) if Path(task.data).is_absolute() else (base / task.data)
        source = data
        if task.mode == "tiles":
            meta = {"label_column": task.label} if str(data).endswith(".csv") else {"labels_from_folders": data.is_dir()}
            pcfg = build_config(PrepareConfig, "prepare", task.prepare_preset, values={
                "metadata": meta, "output": {"qa_thumbnails": 0}})
            source = out / "cache" / task.name / "prepared"
            log(f"[{task.name}] preparing {data}")
            run_prepare([str(data)], source, pcfg, log=lambda m: None)
        refs: dict[str, dict] = {}
        for spec in cfg.encoders:
            store = out / "cache" / task.name / _slug(spec)
            log(f"[{task.name}] extracting with {spec}")
            enc = create_encoder(spec)
            run_extract(enc, source, task.mode, store, cfg.batch_size, label_column=task.label, workers=1,
                        log=lambda m: None, progress=progress)
            label = "label" if "label" in (store / "manifest.csv").read_text().splitlines()[0].split(",") else task.label
            d, splits = prepare_eval(store, label, task.group_column, task.split_column, task.folds, task.seeds,
                                     task.exclude, log=log, warn=lambda m: log(f"warning: {m}"))
            ev_out = out / task.name / _slug(spec)
            ev_out.mkdir(parents=True, exist_ok=True)
            if task.eval == "mil":
                summaries = [evaluate_mil(d, splits, ev_out, task.epochs, progress=progress)]
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
    (out / "results.md").write_text(table)
    _plot(rows, out / "results.png")
    return rows


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
