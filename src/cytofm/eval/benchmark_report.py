"""The benchmark's outputs: result rows, the claimed comparisons with Holm-adjusted p-values, the markdown
that says in words which differences hold, and the figure. Tables name encoders and data as a reader can
reproduce them (``display_name``), never by a path of the machine that ran them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cytofm.eval.compare import claimed_pairs, paired_fold_difference
from cytofm.eval.cross_validation import CI_METHOD
from cytofm.eval.intervals import holm
from cytofm.eval.metrics import METRICS, chance_levels, counts_text
from cytofm.utils.display import display_name, display_path, display_text

if TYPE_CHECKING:
    from cytofm.eval.benchmark import TaskRun
    from cytofm.eval.config import BenchmarkConfig

SEEN_MARK = "†"


def result_rows(task_runs: list[TaskRun]) -> list[dict]:
    rows = []
    for tr in task_runs:
        for spec, run in tr.runs.items():
            for s in run.summaries:
                row = {"task": tr.task.name, "data": display_path(tr.task.data),
                       "encoder": display_name(spec), "weights_sha": run.weights_hash, "method": s["method"],
                       "n_items": s["n_items"], "n_splits": s["n_splits"], "groups": tr.groups_from,
                       **_chance_columns(s.get("class_counts") or {})}
                for k in METRICS:
                    row[f"{k}_mean"] = round(s[k]["mean"], 4)
                    row[f"{k}_sd"] = round(s[k]["sd"], 4)
                    row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (round(v, 4) for v in s[k]["ci95"])
                    row[f"{k}_ci_low_unclipped"], row[f"{k}_ci_high_unclipped"] = (
                        round(v, 4) for v in s[k].get("ci95_unclipped", s[k]["ci95"]))
                for k in METRICS:
                    row[f"{k}_ensemble"] = round(s[k]["ensemble"], 4)
                    row[f"{k}_ensemble_item_boot_low"], row[f"{k}_ensemble_item_boot_high"] = (
                        round(v, 4) for v in s[k]["ensemble_item_bootstrap_ci95"])
                row["seen_in_pretraining"] = "" if run.seen is None else round(run.seen, 4)
                row["pretraining_record"] = run.record
                if run.loc:
                    loc = run.loc
                    row.update({"attn_mass": round(loc["mass"], 4),
                                "attn_mass_uniform": round(loc["chance_mass"], 4),
                                "pointing": round(loc["hit"], 4),
                                "pointing_chance": round(loc["chance_hit"], 4),
                                "n_localised": int(loc["n"])})
                rows.append(row)
    return rows


def _chance_columns(counts: dict[str, int]) -> dict:
    """The items' class counts and each metric's chance level (blank where there is none, or for a summary
    written before class counts were kept)."""
    chance = chance_levels(counts) if any(counts.values()) else {}
    return {"class_counts": counts_text(counts),
            **{f"{k}_chance": "" if chance.get(k) is None else round(chance[k], 4) for k in METRICS}}


def comparison_rows(task_runs: list[TaskRun], cfg: BenchmarkConfig) -> list[dict]:
    """Every claimed comparison of every task and method, with Holm-adjusted p-values over the whole table."""
    rows = []
    for tr in task_runs:
        present = list(tr.runs)
        explicit = None if cfg.comparisons is None else [  # skipped: dropped
            c for c in cfg.comparisons if all(x.strip() in present for x in c.split(" vs "))]
        pairs = claimed_pairs(present, cfg.baselines, explicit)
        for a, b in pairs:
            sa = {s["method"]: s for s in tr.runs[a].summaries}
            sb = {s["method"]: s for s in tr.runs[b].summaries}
            for method in [m for m in sa if m in sb]:
                iv = paired_fold_difference(sa[method]["_folds"], sb[method]["_folds"], cfg.metric,
                                            sa[method]["test_train_ratio"])
                rows.append({"task": tr.task.name, "method": method,
                             "a": display_name(a), "b": display_name(b),
                             "metric": cfg.metric, "mean_a": round(sa[method][cfg.metric]["mean"], 4),
                             "mean_b": round(sb[method][cfg.metric]["mean"], 4), "diff": round(iv.mean, 4),
                             "diff_ci_low": round(max(iv.low, -1.0), 4),
                             "diff_ci_high": round(min(iv.high, 1.0), 4),
                             "diff_ci_low_unclipped": round(iv.low, 4),
                             "diff_ci_high_unclipped": round(iv.high, 4),
                             "p": iv.p,
                             "n_folds": iv.n})
    adj = holm([r["p"] for r in rows])
    for r, h in zip(rows, adj, strict=True):
        r["p"] = float(f"{r['p']:.4g}")
        r["p_holm"] = float(f"{h:.4g}")
        r["holds"] = bool(h < cfg.alpha)
    return rows


def _chance_cell(r: dict, metric: str) -> str:
    v = r.get(f"{metric}_chance", "")
    return "-" if v == "" else f"{v:.3f}"


def _seen_cell(r: dict) -> str:
    v = r["seen_in_pretraining"]
    return "not recorded" if v == "" else (f"{SEEN_MARK} {100 * v:.0f}%" if v > 0 else "0%")


def write_markdown(path: Path, task_runs: list[TaskRun], rows: list[dict], comps: list[dict],
                   cfg: BenchmarkConfig, skipped: dict[str, str]) -> None:
    m = cfg.metric
    md = [f"Estimates are means over folds x seeds; each 95% CI is for that mean ({CI_METHOD}). "
          "Paired differences use the same folds, seeds and items on both sides.\n",
          f"| task | encoder | method | {m.replace('_', ' ')} [95% CI] | chance | sd over folds | macro-F1 | "
          "AUROC (chance 0.5) | seen in pretraining |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = f" {SEEN_MARK}" if r["seen_in_pretraining"] not in ("", 0, 0.0) else ""
        md.append(f"| {r['task']} | {r['encoder']}{mark} | {r['method']} | {r[m + '_mean']:.3f} "
                  f"[{r[m + '_ci_low']:.3f}, {r[m + '_ci_high']:.3f}] | {_chance_cell(r, m)} | "
                  f"{r[m + '_sd']:.3f} | "
                  f"{r['macro_f1_mean']:.3f} | {r['auroc_mean']:.3f} | {_seen_cell(r)} |")
    if any(_seen_cell(r).startswith(SEEN_MARK) for r in rows):
        md.append(f"\n{SEEN_MARK} The encoder saw these evaluation images (without labels) in pretraining "
                  "(SHA-256 or pHash match with its pretraining record): the row measures what it learned "
                  "about these images, not transfer to new ones.")
    md += ["", *_comparison_md(comps, cfg), "", *_setup_md(task_runs, skipped),
           *_localisation_md(task_runs, rows)]
    path.write_text("\n".join(md) + "\n")


def _comparison_md(comps: list[dict], cfg: BenchmarkConfig) -> list[str]:
    if not comps:
        return ["No comparisons (fewer than two encoders per task)."]
    md = [f"Comparisons ({cfg.metric.replace('_', ' ')}, A - B, paired per fold; {len(comps)} tests, "
          f"Holm-adjusted across the table, alpha {cfg.alpha}):", "",
          "| task | method | A | B | A - B [95% CI] | p | Holm p | holds |",
          "|---|---|---|---|---|---|---|---|"]
    for c in comps:
        md.append(f"| {c['task']} | {c['method']} | {c['a']} | {c['b']} | {c['diff']:+.3f} "
                  f"[{c['diff_ci_low']:+.3f}, {c['diff_ci_high']:+.3f}] | {c['p']:.3g} | {c['p_holm']:.3g} | "
                  f"{'yes' if c['holds'] else 'no'} |")
    held = [c for c in comps if c["holds"]]
    md += ["", "In words:"]
    for c in held:
        verb = "beats" if c["diff"] > 0 else "is worse than"
        md.append(f"- {c['a']} {verb} {c['b']} on {c['task']} ({c['method']}): {c['diff']:+.3f} "
                  f"[{c['diff_ci_low']:+.3f}, {c['diff_ci_high']:+.3f}], Holm p {c['p_holm']:.3g}.")
    if not held:
        md.append("- No difference holds after the Holm correction.")
    rest = [c for c in comps if not c["holds"]]
    if rest:
        md.append("- Not established (the interval includes 0 or the test does not survive Holm): "
                  + "; ".join(f"{c['a']} vs {c['b']} on {c['task']} ({c['method']}, {c['diff']:+.3f}, "
                              f"Holm p {c['p_holm']:.3g})" for c in rest) + ".")
    return md


def _setup_md(task_runs: list[TaskRun], skipped: dict[str, str]) -> list[str]:
    md = ["Tasks (data paths as in the config; encoders as specified, local paths cut to their last "
          "component):", ""]
    for tr in task_runs:
        d = tr.duplicates
        dup = (f"{d['pairs']} near-duplicate pair(s) over {d['items']} items ({d['cross_label']} with "
               f"different labels){', grouped' if d['grouped'] else ', not grouped'}" if d
               else "duplicates not checked")
        k = tr.folds_used or tr.task.folds
        lowered = (f" (lowered from {tr.task.folds}: a class has too few items or groups)"
                   if k < tr.task.folds else "")
        folds = (f"{k} folds{lowered} x {len(tr.task.seeds)} seed(s)" if not tr.task.split_column
                 else "fixed split")
        md.append(f"- {tr.task.name}: `{display_path(tr.task.data)}`, label `{tr.task.label}`, "
                  f"{tr.n_items} items{_counts_of(tr)}, {tr.task.eval}, {folds}, groups: "
                  f"{tr.groups_from or 'none'}; {dup}.")
    for spec, why in skipped.items():
        md.append(f"- skipped {display_name(spec)}: {display_text(why.splitlines()[0]) if why else ''}")
    return md


def _counts_of(tr: TaskRun) -> str:
    """`` (a 20, b 19)``: the task's items by class, from its first evaluated summary."""
    counts = next((s.get("class_counts") for run in tr.runs.values() for s in run.summaries
                   if s.get("class_counts")), None)
    return f" ({counts_text(counts)})" if counts else ""


def _localisation_md(task_runs: list[TaskRun], rows: list[dict]) -> list[str]:
    loc = [r for r in rows if "attn_mass" in r]
    if not loc:
        return []
    md = ["", "MIL attention against the annotated objects (out-of-fold attention, mean over items and "
              "seeds):", "",
          "| task | encoder | attention mass on object (uniform attention) | "
          "pointing game (chance) | items |",
          "|---|---|---|---|---|"]
    for r in loc:
        md.append(f"| {r['task']} | {r['encoder']} | {r['attn_mass']:.3f} ({r['attn_mass_uniform']:.3f}) | "
                  f"{r['pointing']:.3f} ({r['pointing_chance']:.3f}) | {r['n_localised']} |")
    return md


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.bar(xs, ys, w, yerr=np.nan_to_num(np.clip([lo, hi], 0, None)), capsize=3, label=e)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("balanced accuracy (mean over folds x seeds, 95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("cytofm benchmark")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
