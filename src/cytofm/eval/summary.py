"""The benchmark's result in plain words: per task and method, which encoder did best and whether the
reference encoder (the config's first) beats each other encoder, by how much, with the paired interval.

A first-time reader takes a table of means as a ranking; these sentences say which differences the paired
test supports and which it does not, including "the reference does not beat random init" where that is so.
"""

from __future__ import annotations

from cytofm.utils.display import display_name


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def headline(rows: list[dict], comps: list[dict], reference: str, metric: str = "balanced_accuracy",
             task_titles: dict[str, str] | None = None) -> list[str]:
    """One paragraph per (task, method): the best encoder with its interval, then the reference against
    every other encoder (orientation: reference - other). ``rows``/``comps`` as the benchmark writes them."""
    ref = display_name(reference)
    titles = task_titles or {}
    lines = []
    keys = list(dict.fromkeys((r["task"], r["method"]) for r in rows))
    for task, method in keys:
        rs = sorted((r for r in rows if r["task"] == task and r["method"] == method),
                    key=lambda r: -r[f"{metric}_mean"])
        best = rs[0]
        name = titles.get(task, task)
        words = [f"{name} ({method}, {best['n_items']} items, {metric.replace('_', ' ')}): best "
                 f"{best['encoder']} {best[f'{metric}_mean']:.3f} [{best[f'{metric}_ci_low']:.3f}, "
                 f"{best[f'{metric}_ci_high']:.3f}]."]
        for c in comps:
            if c["task"] != task or c["method"] != method or ref not in (c["a"], c["b"]):
                continue
            sign = 1 if c["a"] == ref else -1
            other = c["b"] if sign == 1 else c["a"]
            d, lo, hi = sign * c["diff"], *sorted((sign * c["diff_ci_low"], sign * c["diff_ci_high"]))
            iv = f"{_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]"
            if c["holds"] and d > 0:
                words.append(f"{ref} beats {other} by {iv} (Holm p {c['p_holm']:.2g}).")
            elif c["holds"]:
                words.append(f"{ref} is WORSE than {other}: {iv} (Holm p {c['p_holm']:.2g}).")
            elif other.startswith("random:"):
                words.append(f"{ref} does NOT beat random init here: {iv}, the interval includes 0 or the "
                             f"test does not survive the correction (Holm p {c['p_holm']:.2g}).")
            else:
                words.append(f"No difference established between {ref} and {other}: {iv} "
                             f"(Holm p {c['p_holm']:.2g}).")
        lines.append(" ".join(words))
    return lines


INTERVALS = ("Intervals: 95%, corrected resampled t over folds x seeds; differences paired per fold, "
             "their p-values Holm-corrected across the comparisons.")
"""What the summary's intervals are (the report shows it under the summary, which may sit beside others)."""


def write_summary(path, lines: list[str], title: str = "Summary") -> None:
    from pathlib import Path

    Path(path).write_text(f"## {title}\n\n" + "\n".join(f"- {ln}" for ln in lines) + f"\n\n{INTERVALS}\n")
