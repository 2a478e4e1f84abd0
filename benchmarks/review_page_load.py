"""How fast the triage review page loads and reacts at scale: a page of 1,000 cases x 30 cells (small random
JPEG crops, about 1.5 KB each) opened from disk in headless Chromium; the time to DOMContentLoaded and to the
worklist built (``window.cytofmReady``), each of 20 case panels built and its crops decoded, and the worklist
scrolled to its bottom a frame at a time.

Usage: python benchmarks/review_page_load.py [--cases 1000] [--cells 30] [--open 20] [--out DIR]
Needs Debian's chromium and chromedriver and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import base64
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cytofm.viz.review_page import write_review_page

CLASSES = ["normal", "schistocyte", "spherocyte", "target cell", "other"]
DECISIONS = {5: "review", 4: "review", 3: "no further review", 2: "no further review", 1: "no further review"}

OPEN_CASE = """const done = arguments[arguments.length - 1];
const row = document.querySelectorAll('#wl-body tr')[arguments[0]];
const t0 = performance.now();
row.children[1].click();
const built = performance.now() - t0;
Promise.all([...document.querySelectorAll('#panel img')].map((i) => i.decode())).then(() => {
  const decoded = performance.now() - t0;
  requestAnimationFrame(() => requestAnimationFrame(() => done([built, decoded, performance.now() - t0])));
});"""

SCROLL = """const done = arguments[arguments.length - 1], pane = document.getElementById('left'), frames = [];
let last = performance.now();
const t0 = last;
function step() {
  const now = performance.now(); frames.push(now - last); last = now;
  if (pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 1)
    return done([now - t0, frames.length, Math.max(...frames)]);
  pane.scrollTop += pane.clientHeight;
  requestAnimationFrame(step);
}
requestAnimationFrame(step);"""


def crops(n: int, rng: np.random.Generator, size: int = 64) -> list[str]:
    """``n`` base64 JPEGs of smooth random colour (blotches upsampled from 6 x 6, some noise): about the
    1.5 KB of a cell crop."""
    out = []
    for _ in range(n):
        small = rng.integers(60, 230, (6, 6, 3)).astype(np.uint8)
        im = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        im = np.clip(im + rng.normal(0, 8, im.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=80)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def synthetic(n_cases: int, n_cells: int, seed: int = 0) -> tuple[list[dict], dict[str, dict]]:
    """A ranked worklist and its cases: 2% could not be analysed, the rest with ``n_cells`` cells each."""
    rng = np.random.default_rng(seed)
    worklist, cases = [], {}
    scores = np.sort(rng.random(n_cases))[::-1]
    for i, score in enumerate(scores):
        name = f"slide-{i:05d}.svs"
        if rng.random() < 0.02:
            worklist.append({"case": name, "rank": "", "score": "", "spread": "", "quintile": "",
                             "decision": "could not analyse", "qc_rescreen": False, "adequacy": "",
                             "reason": "no cells in focus", "n_cells": 0})
            continue
        q = 5 - int(5 * i / n_cases)
        worklist.append({"case": name, "rank": i + 1, "score": float(score),
                         "spread": float(rng.random() / 10), "quintile": q, "decision": DECISIONS[q],
                         "qc_rescreen": bool(rng.random() < 0.1), "reason": "", "n_cells": n_cells,
                         "adequacy": "satisfactory" if rng.random() < 0.9 else "limited"})
        cells = [{"id": f"{name}:{j}", "x": float(rng.random() * 4000), "y": float(rng.random() * 3000),
                  "z": 0, "cls": str(rng.choice(CLASSES)), "p": float(rng.random()),
                  "abnormality": float(rng.random()), "focus": float(rng.random()),
                  "seg_confidence": float(rng.random()), "crop": c}
                 for j, c in enumerate(crops(n_cells, rng))]
        galleries = {"top": [int(j) for j in np.argsort([-c["abnormality"] for c in cells])[:8]]}
        for k in CLASSES:
            galleries[k] = [j for j, c in enumerate(cells) if c["cls"] == k]
        galleries["unidentified"] = [j for j, c in enumerate(cells) if c["p"] < 0.2]
        cases[name] = {"image": f"/data/slides/{name}", "cells": cells, "galleries": galleries}
    return worklist, cases


def driver(profile: Path, width: int = 1280, height: int = 800):
    """Headless Chromium as tests/viz/test_review_browser.py starts it: a fresh profile, no background
    network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                f"--window-size={width},{height}"]:
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.set_script_timeout(60)
    return d


def measure(html: Path, n_open: int = 20) -> dict:
    """Milliseconds: the page loaded and ready, each of ``n_open`` case panels (built; crops decoded; painted)
    and the worklist scrolled to the bottom one screen a frame."""
    with tempfile.TemporaryDirectory() as profile:
        d = driver(Path(profile))
        try:
            t0 = time.perf_counter()
            d.get(html.resolve().as_uri())
            get_s = time.perf_counter() - t0
            timing = d.execute_script(
                "const t = performance.timing; return [t.domContentLoadedEventEnd - t.navigationStart,"
                " t.loadEventEnd - t.navigationStart, window.cytofmReady, performance.memory.usedJSHeapSize]")
            n_rows = d.execute_script("return document.querySelectorAll('#wl-body tr').length")
            picks = np.linspace(0, n_rows - 1, n_open).round().astype(int).tolist()
            panels = [d.execute_async_script(OPEN_CASE, i) for i in picks]
            scroll = d.execute_async_script(SCROLL)
        finally:
            d.quit()
    return {"get_s": get_s, "dom_content_loaded_ms": timing[0], "load_ms": timing[1], "ready_ms": timing[2],
            "js_heap_mb": timing[3] / 2**20, "rows": n_rows, "panels": panels, "scroll": scroll}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=30)
    ap.add_argument("--open", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to keep review.html in (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        worklist, cases = synthetic(args.cases, args.cells)
        t1 = time.perf_counter()
        html = write_review_page(out / "review.html", worklist, cases, CLASSES, title="review page benchmark",
                                 notes=["synthetic cases: random crops"])
        t2 = time.perf_counter()
        n_crops = sum(len(c["cells"]) for c in cases.values())
        crop_kb = np.mean([len(base64.b64decode(x["crop"])) for c in cases.values() for x in c["cells"]])
        print(f"{len(worklist)} cases, {n_crops} cells (JPEG crops {crop_kb / 1024:.2f} KiB on average); "
              f"built in {t1 - t0:.1f} s, written in {t2 - t1:.2f} s; "
              f"review.html {html.stat().st_size / 2**20:.1f} MiB")
        r = measure(html, args.open)
    built, decoded, painted = (np.array(v) for v in zip(*r["panels"], strict=True))
    print(f"load: driver.get {r['get_s'] * 1000:.0f} ms; DOMContentLoaded {r['dom_content_loaded_ms']} ms; "
          f"worklist of {r['rows']} rows ready at {r['ready_ms']:.0f} ms; load event {r['load_ms']} ms; "
          f"JS heap {r['js_heap_mb']:.0f} MiB")
    for name, v in (("built", built), ("crops decoded", decoded), ("painted", painted)):
        print(f"case panel {name}: median {statistics.median(v):.1f} ms, max {v.max():.1f} ms "
              f"over {len(v)} cases")
    print(f"worklist scrolled to the bottom in {r['scroll'][1]} frames, {r['scroll'][0]:.0f} ms; "
          f"longest frame {r['scroll'][2]:.1f} ms")


if __name__ == "__main__":
    main()
