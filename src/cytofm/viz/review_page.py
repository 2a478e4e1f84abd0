"""The triage review page: one self-contained HTML file (opens from disk, no server, no network) where a
cytology reviewer works down the ranked worklist, confirms or reclassifies cells in each case's galleries,
marks cases reviewed and downloads ``corrections.csv`` (columns ``CSV_COLUMNS``).

Every data value reaches the page as JSON in a ``<script type="application/json">`` block (``<``, ``>``,
``&``, U+2028, U+2029 escaped) and is put into the DOM with ``textContent``/``setAttribute`` only, so a case
or class name is shown, never run; a Content-Security-Policy with the hashes of the page's own script and
style blocks anything else. Crops are decoded only for the open case, so 1,000 cases x 30 cells load fast.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path

CSV_COLUMNS = ("image", "x", "y", "label", "verdict", "case", "predicted", "classes")
"""One row per cell the reviewer confirmed or reclassified; ``classes``: the model's classes, joined by |."""

DECISIONS = ("review", "no further review", "could not analyse")

STYLE = """*{box-sizing:border-box}html,body{margin:0;height:100%}
body{font:13px system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1b1f24;
background:#fff;display:flex;flex-direction:column;height:100vh;overflow:hidden}
header{flex:0 0 44px;display:flex;align-items:center;gap:12px;padding:0 12px;background:#1f3a5f;color:#fff}
h1{font-size:16px;font-weight:600;margin:0;flex:1;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
header button{font:inherit;padding:4px 10px;border:0;border-radius:3px;background:#fff;color:#1f3a5f;
cursor:pointer}
#notes{flex:0 0 auto;margin:0;padding:4px 12px 4px 28px;background:#fff8e1;border-bottom:1px solid #e0d6b0;
font-size:12px}
main{flex:1 1 auto;display:flex;min-height:0}
#left{flex:0 0 781px;width:781px;overflow:auto;border-right:1px solid #9aa5b1;contain:strict}
#right{flex:1 1 auto;overflow:auto;background:#f4f6f8;padding:12px 16px;contain:strict}
.bar{padding:6px 8px}.help{color:#555;font-size:12px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%;font-size:12px}
th{position:sticky;top:0;background:#e3e8ef;text-align:left;vertical-align:bottom;padding:6px 5px;
cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:"\\a0\\25B2"}th[aria-sort=descending]::after{content:"\\a0\\25BC"}
td{padding:4px 5px;border-bottom:1px solid #e6e9ee;white-space:nowrap}
td.case,td.reason{max-width:120px;overflow:hidden;text-overflow:ellipsis}
tbody tr{cursor:pointer}tbody tr:hover{background:#f0f4fa}tbody tr.open{background:#dbe7f7}
tr:focus,th:focus{outline:2px solid #1565c0;outline-offset:-2px}
tr[data-decision="review"] td.decision{color:#b71c1c;font-weight:600}
h2{font-size:16px;margin:0 0 4px;word-break:break-all}h3{font-size:13px;margin:14px 0 6px}
.meta{margin:2px 0;color:#333;word-break:break-all}
.tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{width:110px;padding:4px;border:3px solid #fff;border-radius:4px;background:#fff;cursor:pointer;
font-size:11px;line-height:1.3;overflow:hidden}
.tile img{display:block;width:96px;height:96px;margin:0 auto 2px}
.tile.sel{outline:3px solid #1565c0;outline-offset:1px}
.tile.confirmed{border-color:#2e7d32}.tile.reclassified{border-color:#ef6c00}
.tile .v{font-weight:600}.confirmed .v{color:#2e7d32}.reclassified .v{color:#ef6c00}"""

SCRIPT = r"""(function () {
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const blank = (v) => v === "" || v === null || v === undefined;
const fmt = (v, d, none = "") => blank(v) ? none : Number(v).toFixed(d);
const COLS = [["rank", "rank"], ["case", "case"], ["score", "score"], ["quintile", "quin\u00adtile"],
  ["decision", "decision"], ["qc_rescreen", "QC rescreen"], ["adequacy", "adequacy"], ["reason", "reason"],
  ["n_cells", "cells"], ["reviewed", "re\u00adviewed"]];
const verdicts = D.worklist.map(() => new Map()), reviewed = D.worklist.map(() => false);
const rows = [];
let open = -1, tiles = [], sel = -1, sortKey = "rank", sortDir = 1, dirty = false;

function buildTable() {
  const head = $("wl-head");
  for (const [k, label] of COLS) {
    const th = el("th", null, label);
    th.dataset.key = k; th.tabIndex = 0;
    th.setAttribute("aria-sort", k === sortKey ? "ascending" : "none");
    head.appendChild(th);
  }
  const frag = document.createDocumentFragment();
  D.worklist.forEach((r, i) => {
    const tr = el("tr");
    tr.tabIndex = 0; tr.dataset.i = i; tr.setAttribute("data-decision", r.decision);
    const score = blank(r.score) ? "" :
      fmt(r.score, 3) + (blank(r.spread) ? "" : " \u00b1 " + fmt(r.spread, 3));
    const vals = [r.rank, r.case, score, r.quintile, r.decision, r.qc_rescreen ? "yes" : "", r.adequacy,
      r.reason, r.n_cells, ""];
    vals.forEach((v, c) => {
      const td = el("td", COLS[c][0], v);
      if (c === 1 || c === 7) td.title = String(v);
      tr.appendChild(td);
    });
    rows.push(tr); frag.appendChild(tr);
  });
  $("wl-body").appendChild(frag);
}

function sortValue(i, k) {
  if (k === "reviewed") return reviewed[i] ? 1 : 0;
  if (k === "qc_rescreen") return D.worklist[i].qc_rescreen ? 1 : 0;
  return D.worklist[i][k];
}

function sortBy(k) {
  sortDir = k === sortKey ? -sortDir : 1; sortKey = k;
  const idx = rows.map((_, i) => i);
  idx.sort((a, b) => {  // blanks last either way, ties in worklist order
    const va = sortValue(a, k), vb = sortValue(b, k);
    if (blank(va) || blank(vb)) return blank(va) === blank(vb) ? a - b : (blank(va) ? 1 : -1);
    const c = typeof va === "number" && typeof vb === "number" ? va - vb :
      String(va).localeCompare(String(vb));
    return c ? c * sortDir : a - b;
  });
  const body = $("wl-body");
  for (const i of idx) body.appendChild(rows[i]);
  for (const th of $("wl-head").children)
    th.setAttribute("aria-sort", th.dataset.key !== k ? "none" : sortDir > 0 ? "ascending" : "descending");
}

function focusRow(tr) {  // scrolls the worklist vertically only, clear of its sticky head
  const pane = $("left"), r = tr.getBoundingClientRect(), b = pane.getBoundingClientRect();
  const head = $("wl-head").getBoundingClientRect().height;
  tr.focus({preventScroll: true});
  if (r.top < b.top + head) pane.scrollTop -= b.top + head - r.top;
  else if (r.bottom > b.bottom) pane.scrollTop += r.bottom - b.bottom;
}

function filter(v) { for (const tr of rows) tr.hidden = v !== "all" && tr.dataset.decision !== v; }

function galleryOrder(g) {
  const keys = ["top"].concat(D.classes, ["unidentified"]);
  const own = (k) => Object.prototype.hasOwnProperty.call(g, k);
  return keys.concat(Object.keys(g).filter((k) => !keys.includes(k))).filter(own);
}

function tile(c, j) {
  const cell = c.cells[j], t = el("div", "tile"), img = el("img");
  t.tabIndex = 0; t.dataset.cell = j;
  img.alt = ""; img.src = "data:image/jpeg;base64," + cell.crop;  // decoded only now, for the open case
  t.title = cell.id + ": " + cell.cls + " p=" + fmt(cell.p, 3, "n/a") + ", abnormality " +
    fmt(cell.abnormality, 3, "n/a") + ", focus " + fmt(cell.focus, 3, "n/a") + ", seg confidence " +
    fmt(cell.seg_confidence, 3, "n/a") +
    ", (x, y, z) = (" + cell.x + ", " + cell.y + ", " + (blank(cell.z) ? "n/a" : cell.z) + ")";
  t.append(img, el("div", null, cell.cls + " " + fmt(cell.p, 2, "n/a")),
    el("div", null, "focus " + fmt(cell.focus, 2, "n/a") + " \u00b7 seg " +
      fmt(cell.seg_confidence, 2, "n/a")),
    el("div", "v", ""));
  return t;
}

function paint(t) {
  const j = +t.dataset.cell, label = verdicts[open].get(j), pred = D.cases[open].cells[j].cls;
  t.classList.toggle("confirmed", label !== undefined && label === pred);
  t.classList.toggle("reclassified", label !== undefined && label !== pred);
  t.lastChild.textContent = label === undefined ? "" : (label === pred ? "\u2713 " : "\u2192 ") + label;
}

function openCase(i) {
  const r = D.worklist[i], c = D.cases[i], p = $("panel");
  open = i; tiles = []; sel = -1; p.textContent = "";
  for (const tr of rows) tr.classList.toggle("open", tr === rows[i]);
  const btn = el("button", null, reviewed[i] ? "Reviewed \u2713" : "Mark case reviewed (r)");
  btn.id = "mark"; btn.addEventListener("click", markReviewed);
  p.append(el("h2", null, r.case),
    el("p", "meta", [r.decision, r.adequacy, r.reason].filter((v) => v).join(" \u00b7 ")));
  if (c) p.appendChild(el("p", "meta", c.image));
  p.append(btn, el("p", "help", "Keys: \u2190 \u2192 or j k move \u00b7 " +
    D.classes.slice(0, 9).map((k, n) => (n + 1) + " " + k).join(", ") +
    " reclassify \u00b7 c or Enter confirm \u00b7 r case reviewed \u00b7 s save \u00b7 Esc worklist"));
  if (!c || !c.cells.length) { p.appendChild(el("p", "meta", "No cells to review.")); return; }
  const titles = {top: "Most abnormal cells", unidentified: "Unidentified"};
  for (const k of galleryOrder(c.galleries)) {
    const idx = c.galleries[k], box = el("div", "tiles");
    box.dataset.gallery = k;
    for (const j of idx) { const t = tile(c, j); paint(t); tiles.push(t); box.appendChild(t); }
    const name = k === "top" || k === "unidentified" ? titles[k] : k;
    p.append(el("h3", null, name + " (" + idx.length + ")"), box);
  }
  select(0);
}

function select(k) {
  if (!tiles.length) return;
  if (sel >= 0) tiles[sel].classList.remove("sel");
  sel = Math.max(0, Math.min(tiles.length - 1, k));
  tiles[sel].classList.add("sel");
  if (document.activeElement !== tiles[sel]) tiles[sel].focus();
}

function judge(label) {
  const j = +tiles[sel].dataset.cell;
  verdicts[open].set(j, label); dirty = true;
  for (const t of tiles) if (+t.dataset.cell === j) paint(t);
  select(sel + 1); status();
}

function markReviewed() {
  if (open < 0) return;
  reviewed[open] = true; rows[open].lastChild.textContent = "\u2713";
  $("mark").textContent = "Reviewed \u2713"; status();
}

function status(msg) {
  let n = 0;
  for (const m of verdicts) n += m.size;
  $("status").textContent = (msg ? msg + " \u00b7 " : "") + n + " cells judged \u00b7 " +
    reviewed.filter((v) => v).length + "/" + rows.length + " cases reviewed";
}

const csvField = (v) => /[",\r\n]/.test(String(v)) ? '"' + String(v).replace(/"/g, '""') + '"' : String(v);

function save() {
  const out = [["image", "x", "y", "label", "verdict", "case", "predicted", "classes"]];
  const classes = D.classes.join("|");
  verdicts.forEach((m, i) => {
    for (const j of [...m.keys()].sort((a, b) => a - b)) {
      const c = D.cases[i], cell = c.cells[j], label = m.get(j);
      out.push([c.image, cell.x, cell.y, label, label === cell.cls ? "confirmed" : "reclassified",
        D.worklist[i].case, cell.cls, classes]);
    }
  });
  const a = el("a");
  a.href = URL.createObjectURL(new Blob([out.map((r) => r.map(csvField).join(",")).join("\r\n") + "\r\n"],
    {type: "text/csv"}));
  a.download = "corrections.csv"; document.body.appendChild(a); a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 5000);
  dirty = false; status("saved " + (out.length - 1) + " rows");
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target, tag = t.tagName, k = e.key;
  if (tag === "SELECT" || tag === "INPUT" || (tag === "BUTTON" && (k === "Enter" || k === " "))) return;
  if (tag === "TH" && (k === "Enter" || k === " ")) sortBy(t.dataset.key);
  else if (tag === "TR" && k === "Enter") openCase(+t.dataset.i);
  else if (tag === "TR" && (k === "ArrowDown" || k === "ArrowUp")) {
    let n = k === "ArrowDown" ? t.nextElementSibling : t.previousElementSibling;
    while (n && n.hidden) n = k === "ArrowDown" ? n.nextElementSibling : n.previousElementSibling;
    if (n) focusRow(n);
  } else if (k === "s") save();
  else if (k === "r") markReviewed();
  else if (k === "Escape" && open >= 0) focusRow(rows[open]);
  else if (sel < 0 || tag === "TR" || tag === "TH") return;
  else if (k === "ArrowRight" || k === "ArrowDown" || k === "j") select(sel + 1);
  else if (k === "ArrowLeft" || k === "ArrowUp" || k === "k") select(sel - 1);
  else if (/^[1-9]$/.test(k) && +k <= D.classes.length) judge(D.classes[+k - 1]);
  else if (k === "c" || k === "Enter") judge(D.cases[open].cells[+tiles[sel].dataset.cell].cls);
  else return;
  e.preventDefault();
}

document.title = D.title; $("title").textContent = D.title;
if (D.notes.length) for (const n of D.notes) $("notes").appendChild(el("li", null, n));
else $("notes").remove();
buildTable();
$("wl-head").addEventListener("click", (e) => { if (e.target.dataset.key) sortBy(e.target.dataset.key); });
$("wl-body").addEventListener("click", (e) => {
  const tr = e.target.closest("tr");
  if (tr) openCase(+tr.dataset.i);
});
$("panel").addEventListener("focusin", (e) => { const i = tiles.indexOf(e.target); if (i >= 0) select(i); });
$("filter").addEventListener("change", (e) => filter(e.target.value));
$("save").addEventListener("click", save);
document.addEventListener("keydown", onKey);
window.addEventListener("beforeunload", (e) => { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
status();
window.cytofmReady = performance.now();
})();"""

BODY = """<header><h1 id="title"></h1><span id="status"></span>
<button id="save" type="button">Save corrections (s)</button></header><ul id="notes"></ul>
<main><div id="left"><div class="bar"><label>Show <select id="filter">
<option value="all">all</option>{options}</select></label></div>
<table id="wl"><thead><tr id="wl-head"></tr></thead><tbody id="wl-body"></tbody></table></div>
<div id="right"><div id="panel"><p class="help">Open a case from the worklist (click, or Enter on a row).</p>
</div></div></main>"""


def _blank(v, kind=float):
    """A number as ``kind``, or "" where the worklist has none (could not analyse) or it is not finite."""
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    v = kind(v)
    return v if kind is not float or math.isfinite(v) else ""


def _row(d: dict) -> dict:
    return {"case": str(d["case"]), "rank": _blank(d.get("rank"), int), "score": _blank(d.get("score")),
            "spread": _blank(d.get("spread")), "quintile": _blank(d.get("quintile"), int),
            "decision": str(d.get("decision", "")), "qc_rescreen": bool(d.get("qc_rescreen", False)),
            "adequacy": str(d.get("adequacy") or ""), "reason": str(d.get("reason") or ""),
            "n_cells": int(d.get("n_cells") or 0)}


def _measure(v, kind=float):
    """A cell's measure, or None (null in the page, shown as n/a) where it is unknown: JSON has no NaN."""
    return None if _blank(v, kind) == "" else kind(v)


def _cell(c: dict) -> dict:
    return {"id": str(c["id"]), "x": float(c["x"]), "y": float(c["y"]), "z": _measure(c.get("z"), int),
            "cls": str(c["cls"]),
            **{k: _measure(c.get(k)) for k in ("p", "abnormality", "focus", "seg_confidence")},
            "crop": str(c["crop"])}


def _case(name: str, c: dict | None) -> dict | None:
    """A case's image, cells and galleries as the page reads them; None where there is nothing to show."""
    if not c:
        return None
    cells = [_cell(x) for x in c.get("cells", [])]
    galleries = {}
    for k, idx in (c.get("galleries") or {}).items():
        idx = [int(i) for i in idx]
        if any(not 0 <= i < len(cells) for i in idx):
            raise ValueError(f"review page: case {name!r}, gallery {k!r} names a cell beyond its "
                             f"{len(cells)} cells")
        galleries[str(k)] = idx
    return {"image": str(c.get("image", "")), "cells": cells, "galleries": galleries}


def page_data(worklist: list[dict], cases: dict[str, dict], classes: list[str], title: str = "cytofm triage",
              notes: list[str] = ()) -> dict:
    """What the page embeds: ``cases`` is a list aligned with ``worklist`` (no lookups by name in the page,
    where a case called ``__proto__`` would find something)."""
    rows = [_row(d) for d in worklist]
    return {"title": str(title), "notes": [str(n) for n in notes], "classes": [str(c) for c in classes],
            "worklist": rows, "cases": [_case(r["case"], cases.get(r["case"])) for r in rows]}


def script_json(obj) -> str:
    """JSON that cannot end its ``<script>`` block or open a comment there, and parses the same in JS."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_html(data: dict) -> str:
    csp = (f"default-src 'none'; img-src data:; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; "
           "base-uri 'none'; form-action 'none'")
    options = "".join(f'<option value="{d}">{d}</option>' for d in DECISIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            f"<title>{html.escape(data['title'])}</title>\n<style>{STYLE}</style></head>\n<body>\n"
            + BODY.replace("{options}", options)
            + f'\n<script type="application/json" id="data">{script_json(data)}</script>\n'
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def write_review_page(path: Path, worklist: list[dict], cases: dict[str, dict], classes: list[str],
                      title: str = "cytofm triage", notes: list[str] = ()) -> Path:
    """Write the review page to ``path`` through a temporary file, so a reader never sees half a page."""
    from cytofm.utils.io import atomic_path

    path = Path(path)
    text = page_html(page_data(worklist, cases, classes, title, notes))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
