"""One self-contained HTML report of a run folder: configs, metrics with CIs, pretraining curves,
confusion matrices, heatmaps and embedding maps. Images are embedded, so the file opens offline."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from cytofm.viz.localization import summarise

MAX_IMAGES = 80
CURVES = [("loss", ["loss", "loss_cls", "loss_patch", "loss_koleo"]), ("learning rate", ["lr"]),
          ("teacher temperatures", ["teacher_temp", "teacher_patch_temp"]),
          ("collapse watch: teacher [CLS] entropy / log K", ["entropy_ratio"]),
          ("teacher momentum", ["momentum"]), ("kNN balanced accuracy", ["knn_bacc"])]


EMBED_MAX_PX = 800
EMBED_KEEP_BYTES = 60_000


def _embedded(path: Path) -> tuple[str, str]:
    """(MIME type, base64) of a figure as the report embeds it: small PNGs as they are, larger ones at most
    EMBED_MAX_PX wide as JPEG (quality 80): the demo report went from 18 MB to about 3."""
    data = path.read_bytes()
    if len(data) <= EMBED_KEEP_BYTES:
        return "image/png", base64.b64encode(data).decode()
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > EMBED_MAX_PX:
            im = im.resize((EMBED_MAX_PX, round(im.height * EMBED_MAX_PX / im.width)),
                           Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80, optimize=True)
    if buf.tell() >= len(data):
        return "image/png", base64.b64encode(data).decode()
    return "image/jpeg", base64.b64encode(buf.getvalue()).decode()


def _img(path: Path, root: Path, width: str = "100%") -> str:
    rel = html.escape(str(path.relative_to(root)))
    mime, b64 = _embedded(path)
    return (f"<figure><img loading='lazy' style='max-width:{width}' alt='{rel}' "
            f"src='data:{mime};base64,{b64}'>"
            f"<figcaption>{rel}</figcaption></figure>")


BENCHMARK_INTERVALS = ("Intervals: 95%, corrected resampled t over folds x seeds; differences paired per "
                       "fold, their p-values Holm-corrected across the comparisons.")
"""What a benchmark summary written before summaries named their intervals used."""


def _summary_html(path: Path) -> str:
    """A ``summary.md`` (a heading and '- ' sentences) as a list, then what its intervals are: the file's
    own ``Intervals:`` line (a predict summary's item bootstrap is no paired, Holm-corrected interval)."""
    lines = path.read_text().splitlines()
    items = [ln[2:] for ln in lines if ln.startswith("- ")]
    how = next((ln for ln in lines if ln.startswith("Intervals:")),
               BENCHMARK_INTERVALS if lines[:1] == ["## Summary"] else "")
    return ("<ul class='summary'>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
            + (f"<p class='how'>{html.escape(how)}</p>" if how else ""))


def _md_table(md: str) -> str:
    """The Markdown cytofm writes (pipe tables and plain paragraphs) as HTML, one table per block."""
    parts, block = [], []

    def flush():
        if len(block) >= 2:
            cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in block]
            head, body = cells[0], [r for r in cells[1:]
                                    if not all(re.fullmatch(r":?-+:?", c or "-") for c in r)]
            th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            parts.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
        elif block:
            parts.append(f"<pre>{html.escape(chr(10).join(block))}</pre>")
        block.clear()

    for ln in md.splitlines():
        if ln.strip().startswith("|"):
            block.append(ln.strip())
        else:
            flush()
            if ln.strip():
                parts.append(f"<p>{html.escape(ln.strip())}</p>")
    flush()
    return "".join(parts)


def curves_png(metrics_csv: Path) -> bytes | None:
    """Pretraining curves from a run's metrics.csv as PNG bytes (None when it has no rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "iteration" not in rows[0]:
        return None

    def col(k):
        v = [(float(r["iteration"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        return np.array(v) if v else None

    panels = [(t, [(k, col(k)) for k in ks if k in rows[0]]) for t, ks in CURVES]
    panels = [(t, [(k, c) for k, c in s if c is not None]) for t, s in panels]
    panels = [(t, s) for t, s in panels if s]
    n = len(panels)
    cols = 3
    r = int(np.ceil(n / cols))
    fig, axes = plt.subplots(r, cols, figsize=(12, 3.0 * r), dpi=100, squeeze=False, constrained_layout=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, series) in zip(axes.flat, panels, strict=False):
        for k, c in series:
            ax.plot(c[:, 0], c[:, 1], label=k, lw=1.2, marker="o" if k == "knn_bacc" else None, ms=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(series) > 1:
            ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


STYLE = ("body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:8px 0}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
         "th{background:#f3f3f3}"
         ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}"
         ".summary li{margin:6px 0;font-size:15px}figure{margin:0}figcaption{font-size:11px;color:#666}"
         "pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}"
         "h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px;overflow-wrap:anywhere}")
"""The report's stylesheet (the screenshot test checks the rendered page against it)."""
SKIP_FOLDERS = {"cache", "tensorboard", "prepared"}


def build_report(run: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: not a folder")
    out = Path(out) if out else run / "report.html"
    files = sorted(p for p in run.rglob("*")
                   if p.is_file() and not SKIP_FOLDERS & set(p.relative_to(run).parts[:-1]))
    sections = [*_text_sections(files, run), *_figure_sections(files, run)]
    htmls = [p for p in files if p.suffix == ".html" and p.resolve() != out.resolve()]
    for p in htmls[:6]:
        sections.append(f"<h2>Interactive: {html.escape(str(p.relative_to(run)))}</h2>"
                        "<iframe style='width:100%;height:560px;border:0' "
                        f"srcdoc=\"{html.escape(p.read_text())}\"></iframe>")
    configs = [p for p in files if p.name == "config.yaml"]
    if configs:
        sections.append("<h2>Resolved configurations</h2>" + "".join(
            f"<details><summary>{html.escape(str(p.relative_to(run)))}</summary>"
            f"<pre>{html.escape(p.read_text())}</pre></details>"
            for p in configs))
    if not sections:
        raise FileNotFoundError(f"{run}: nothing to report (no results, metrics, figures or configs found)")
    from cytofm import __version__

    title = title or f"cytofm report: {run.resolve().name}"
    doc = ("<!doctype html><html><head><meta charset='utf-8'>"
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
           f"<h1>{html.escape(title)}</h1><p>cytofm {__version__}, written {datetime.now():%Y-%m-%d %H:%M}, "
           f"from the run folder {html.escape(run.resolve().name)}/</p>"  # never this machine's absolute path
           + "".join(sections) + "</body></html>")
    out.write_text(doc)
    return out


def _text_sections(files: list[Path], run: Path) -> list[str]:
    """The summaries in words, the result tables, the localisation scores."""
    sections = []
    summaries = [p for p in files if p.name == "summary.md"]
    if summaries:
        sections.append(
            "<h2>Summary: what the results say</h2>" + "".join(
                (f"<h3>{html.escape(str(p.parent.relative_to(run)))}</h3>" if len(summaries) > 1 else "")
                + _summary_html(p) for p in summaries))
    tables = [p for p in files if p.name == "results.md"]
    if tables:
        body = "".join(f"<h3>{html.escape(p.relative_to(run).as_posix())}</h3>"
                       f"{_md_table(p.read_text())}" for p in tables)
        sections.append("<h2>Results (estimates and intervals as each table states)</h2>" + body)
    for p in [p for p in files if p.name == "localization.csv"]:
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            s = summarise(rows)
            sections.append(f"<h2>Attention localisation: {html.escape(str(p.parent.relative_to(run)))}</h2>"
                            f"<p>{len(rows)} items. Attention mass on the annotated object "
                            f"{s.get('mass', float('nan')):.3f} "
                            f"(uniform attention: {s.get('chance_mass', float('nan')):.3f}); pointing game "
                            f"{s.get('hit', float('nan')):.3f} "
                            f"(chance {s.get('chance_hit', float('nan')):.3f}).</p>")
    return sections


def _figure_sections(files: list[Path], run: Path) -> list[str]:
    """Pretraining curves, then the PNG figures by kind (at most ``MAX_IMAGES`` in all)."""
    sections = []
    for p in [p for p in files if p.name == "metrics.csv"]:
        png = curves_png(p)
        if png:
            sections.append(f"<h2>Pretraining curves: {html.escape(str(p.parent.relative_to(run)))}</h2>"
                            "<img style='max-width:100%' alt='curves' "
                            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    pngs = [p for p in files if p.suffix.lower() == ".png" and "qa" not in p.relative_to(run).parts]
    groups = [("Confusion matrices", [p for p in pngs if p.name.startswith("confusion")]),
              ("Attention maps and MIL heatmaps", [p for p in pngs if "heatmap" in str(p.relative_to(run))
                                                   or "attention" in p.name or "gallery" in p.name]),
              ("Embedding maps", [p for p in pngs if "umap" in str(p.relative_to(run)).lower()
                                  or "embedding" in p.name])]
    used = {p for _, g in groups for p in g}
    groups.append(("Other figures", [p for p in pngs if p not in used]))
    shown = 0
    for name, g in groups:
        if not g:
            continue
        take = g[: max(0, MAX_IMAGES - shown)]
        shown += len(take)
        more = f"<p>{len(g) - len(take)} more in the run folder.</p>" if len(take) < len(g) else ""
        sections.append(f"<h2>{name}</h2><div class='grid'>" + "".join(_img(p, run) for p in take)
                        + f"</div>{more}")
    return sections
