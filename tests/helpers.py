"""Plain helpers the tests share (image builders, the shared-data lookup, tiny configs); fixtures live in
the conftest.py files. Test modules import from here, never from one another or from a conftest."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(os.environ.get("CYTOFM_SHARED_DATA",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()

TINY = ["model.arch=vit_tiny_patch16_224", "head.out_dim=64", "head.hidden_dim=32", "head.bottleneck_dim=16",
        "crops.global_size=32", "crops.local_size=16", "crops.n_local=2", "train.batch_size=4",
        "data.num_workers=0", "head.freeze_last_layer_iters=1", "optim.warmup_iters=2",
        "loss.warmup_teacher_temp_iters=2", "train.log_every=1", "model.drop_path=0.1",
        "runtime.precision=fp32", "mask.ratio=[0.3]", "mask.ratio_var=[0.2]"]
"""Overrides for a pretraining run small enough for a test: a ViT-Tiny on 32 px crops, fp32."""

DINOV2 = ["method=dinov2", "head.separate=true", "loss.centering=sinkhorn_knopp", "loss.koleo_weight=0.1"]
"""Overrides that make a pretraining run DINOv2 (separate heads, Sinkhorn-Knopp, KoLeo)."""


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with a message saying what is missing."""
    p = SHARED_DATA / name
    if not (p / "manifest.csv").is_file():
        pytest.skip(f"real data not found at {p} (set CYTOFM_SHARED_DATA to the shared/data folder)")
    return p


def smear(h: int = 240, w: int = 320, cells=((80, 60, 25), (200, 150, 30)), color=(120, 80, 160),
          seed: int = 0):
    """A synthetic smear field: slightly noisy off-white glass with stained disks.
    Returns (rgb, truth mask)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (222, 220, 214), np.float32) + rng.normal(0, 2.0, (h, w, 3))
    yy, xx = np.mgrid[:h, :w]
    truth = np.zeros((h, w), bool)
    for cx, cy, r in cells:
        d = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        truth |= d
        img[d] = color
    return np.clip(img, 0, 255).astype(np.uint8), truth


def smear_folder(root: Path, n: int = 6) -> Path:
    """``n`` small synthetic smear fields (64 px, two cells each) in ``root``: the pretraining tests' data."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb, _ = smear(h=64, w=64, cells=((20 + 4 * i, 30, 10), (44, 40, 8)), seed=i)
        Image.fromarray(rgb).save(root / f"{i}.png")
    return root


def chromium_screenshot(html, png, width=1280, height=2400):
    """``html`` rendered by headless Chromium into ``png``; returns it as an (height, width, 3) int RGB array
    (skips the test where Chromium is not installed)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile; no background connections to fail on
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", f"file://{html}"], check=True, capture_output=True,
                       timeout=120)
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def assert_report_frame(rgb: np.ndarray) -> None:
    """A screenshot of a report is laid out as cytofm.viz.report.STYLE says: the page white in the body's
    24 px margins, the h1 in #222 at the content's top-left corner, and every h2 ruled by a 1 px #ddd line
    exactly across the content (the window less the margins, at most 1200 px wide)."""
    h, w, _ = rgb.shape
    right = 24 + min(w - 48, 1200)  # the content's right edge: max-width 1200px
    assert (rgb[:24] == 255).all() and (rgb[:, :24] == 255).all() and (rgb[:, right:] == 255).all()
    dark_rows = np.nonzero((rgb[:, :, 0] < 128).any(axis=1))[0]
    assert dark_rows.size, "no text on the page"
    top = dark_rows[0]
    assert 24 <= top < 24 + 16, top  # the h1's first glyph row, just under the top margin
    band = rgb[top:top + 20]  # within the h1's first line (32 px bold)
    assert np.nonzero((band[:, :, 0] < 128).any(axis=0))[0][0] in range(24, 30)  # starts at the left margin
    assert band.min() == 0x22 and (band == 0x22).all(axis=-1).sum() > 50  # solid glyph stems in #222
    rules = np.all(rgb[:, 24:right] == 0xDD, axis=(1, 2))
    assert rules.any() and not np.all(rgb[:, [23, right]] == 0xDD,
                                      axis=(1, 2)).any()  # #ddd, margin to margin


def tiny_cfg(*extra):
    """The TINY pretraining config with ``extra`` overrides on top."""
    from cytofm.config.loader import build_config
    from cytofm.ssl.config import PretrainConfig

    return build_config(PretrainConfig, overrides=[*TINY, *extra])


def run(cfg, data, out, **kw):
    """A pretraining run of ``cfg`` on the images in ``data``, into ``out``; returns the finished trainer."""
    from cytofm.ssl.trainer import SSLTrainer

    t = SSLTrainer(cfg, [str(data)], out, log=lambda m: None, **kw)
    t.run()
    return t


def prepare_cfg(*overrides):
    """A PrepareConfig with one worker and no QA thumbnails, then ``overrides``."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig

    return build_config(PrepareConfig, overrides=["output.workers=1", "output.qa_thumbnails=-1", *overrides])


def free_port() -> int:
    """A TCP port on 127.0.0.1 free just now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUPATH_OBJECT_TYPES = {"annotation", "detection", "cell", "tile", "tmaCore"}


def qupath_geojson_problems(path) -> list[str]:
    """What in a written GeoJSON file QuPath would not import as written, by QuPath's rules and checked
    independently of cytofm's writer: strict JSON (no NaN), a FeatureCollection of Features each with a UUID
    ``id``, a Polygon/MultiPolygon of closed rings of [x, y] numbers, ``properties.objectType`` one of
    QuPath's, ``classification`` an object {name, color: [r, g, b]}, ``measurements`` an object of finite
    numbers, and ``nucleusGeometry`` only on cells, beside ``geometry`` (never in properties)."""
    import json
    import math
    import uuid

    def bad_constant(c):
        raise ValueError(f"{c} is not JSON")

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def ring_problems(ring, where) -> list[str]:
        if not isinstance(ring, list) or len(ring) < 4:
            return [f"{where}: a ring needs at least 4 positions"]
        if any(not isinstance(p, list) or len(p) != 2 or not all(map(number, p)) for p in ring):
            return [f"{where}: a position is not [x, y] numbers"]
        return [] if ring[0] == ring[-1] else [f"{where}: ring not closed"]

    def geometry_problems(g, where) -> list[str]:
        if not isinstance(g, dict) or g.get("type") not in ("Polygon", "MultiPolygon"):
            return [f"{where}: not a Polygon or MultiPolygon"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        return [p for poly in polys for ring in poly for p in ring_problems(ring, where)]

    try:
        doc = json.loads(open(path, encoding="utf-8").read(), parse_constant=bad_constant)
    except ValueError as e:
        return [f"not strict JSON: {e}"]
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(
            doc.get("features"), list):
        return ["not a FeatureCollection with a features list"]
    out: list[str] = []
    for k, f in enumerate(doc["features"]):
        where = f"feature {k}"
        if f.get("type") != "Feature":
            out.append(f"{where}: type is not Feature")
        try:
            uuid.UUID(str(f.get("id")))
        except ValueError:
            out.append(f"{where}: id {f.get('id')!r} is not a UUID")
        out += geometry_problems(f.get("geometry"), where)
        props = f.get("properties")
        if not isinstance(props, dict) or props.get("objectType") not in QUPATH_OBJECT_TYPES:
            out.append(f"{where}: properties.objectType missing or unknown")
            continue
        c = props.get("classification")
        if c is not None and not (isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"]
                                  and isinstance(c.get("color"), list) and len(c["color"]) == 3
                                  and all(isinstance(v, int) and 0 <= v <= 255 for v in c["color"])):
            out.append(f"{where}: classification is not {{name, color: [r, g, b]}}")
        m = props.get("measurements")
        if m is not None and not (isinstance(m, dict) and all(isinstance(n, str) and number(v)
                                                              for n, v in m.items())):
            out.append(f"{where}: measurements is not an object of finite numbers")
        if "nucleusGeometry" in props:
            out.append(f"{where}: nucleusGeometry inside properties")
        if "nucleusGeometry" in f:
            if props["objectType"] != "cell":
                out.append(f"{where}: nucleusGeometry on a {props['objectType']}")
            out += geometry_problems(f["nucleusGeometry"], f"{where} nucleus")
    return out


def eval_field(h: int = 256, w: int = 320) -> np.ndarray:
    """A real blood-smear field of the evaluation part (chula_rbc12), cropped; a synthetic smear without
    the shared data."""
    from cytofm.data.provenance.split_files import part_of

    root = SHARED_DATA / "chula_rbc12"
    if root.is_dir():
        return np.asarray(Image.open(root / part_of("chula_rbc12", "eval")[0]).convert("RGB"))[:h, :w]
    return smear(h, w, [(60, 60, 25), (200, 150, 30), (250, 60, 20)], seed=5)[0]


def defocus_stack(field: np.ndarray, sharp, n: int = 5, step: float = 1.5) -> np.ndarray:
    """(n, H, W, 3) planes of ``field`` defocused by ``step`` px of Gaussian blur per plane away from the
    sharp one. ``sharp``: a plane, or ``(left, right)``: sharp at ``left`` on the left 40 % of the field, at
    ``right`` on the right 40 %, the two blended across the middle (a field tilted through focus)."""
    from scipy import ndimage

    f = field.astype(np.float32)

    def blur(s):
        return f if s == 0 else np.stack([ndimage.gaussian_filter(f[..., c], s) for c in range(3)], -1)

    left, right = (sharp, sharp) if np.isscalar(sharp) else sharp
    w = f.shape[1]
    t = np.clip((np.arange(w) - 0.4 * w) / (0.2 * w), 0, 1)[None, :, None]
    planes = [blur(step * abs(z - left)) * (1 - t) + blur(step * abs(z - right)) * t for z in range(n)]
    return np.stack(planes).round().clip(0, 255).astype(np.uint8)


def write_ome_zstack(path: Path, planes: np.ndarray, tile=(64, 64), compression=None, mpp: float = 0.19,
                     z_um: float = 1.5) -> Path:
    """``planes`` as an OME-TIFF z-stack written by tifffile (axes ZYXS, tiled unless ``tile`` is None)."""
    import tifffile

    tifffile.imwrite(path, planes, ome=True, photometric="rgb", tile=tile, compression=compression,
                     metadata={"axes": "ZYXS", "PhysicalSizeZ": z_um, "PhysicalSizeX": mpp,
                               "PhysicalSizeY": mpp})
    return path


def near_duplicate_store(root, n: int = 30, instances: int = 1):
    """A feature store of ``n`` images labelled a/b alternately, whose item i02 is i00 three grey levels
    brighter (a near-duplicate pair of one label); each item ``instances`` features of size 6 shifted by its
    class. For the tests of near-duplicates kept on one side of every split (folds and refits)."""
    import numpy as np
    from PIL import Image

    from cytofm.features.store import write_item
    from cytofm.utils.io import write_csv

    rng = np.random.default_rng(0)
    rows, base = [], None
    for i in range(n):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
        base = img if i == 0 else base
        img = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8) if i == 2 else img
        path = root / "images" / f"i{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        f = rng.normal(0, 1, (instances, 6)).astype(np.float32) + (i % 2)
        write_item(root / "features" / f"i{i:02d}.h5", f, np.zeros((instances, 2)), {"encoder": "test"})
        rows.append({"id": f"i{i:02d}", "path": str(path), "h5": f"features/i{i:02d}.h5",
                     "n_instances": instances, "label": ["a", "b"][i % 2]})
    write_csv(root / "manifest.csv", rows)
    return root


PLANTED_SIZES = ["resolution.mpp=0.25", "cells.typical_diameter_um=6", "cells.min_diameter_um=2",
                 "cells.max_diameter_um=12"]
"""Prepare's settings for :func:`planted_fields`."""


def planted_fields(root, n_large: list[int], seed: int) -> list[tuple[str, int, int, str]]:
    """Planted smear fields for cell classifiers, six cells each on a 3 x 2 grid: ``n_large[k]`` large ones
    (8 um, 'large'), the others small (4.5 um); returns every cell as (image, x, y, kind)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    points = []
    for k, big in enumerate(n_large):
        jitter = rng.integers(-4, 5, (6, 2))
        cells = [(40 + 70 * (j % 3) + int(jitter[j, 0]), 40 + 70 * (j // 3) + int(jitter[j, 1]),
                  16 if j < big else 9) for j in range(6)]
        name = f"{seed}_{k}.png"
        Image.fromarray(smear(180, 240, cells, seed=seed * 100 + k)[0]).save(root / name)
        points += [(f"{root.name}/{name}", x, y, "large" if r == 16 else "small") for x, y, r in cells]
    return points


CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None: Chromium, chromedriver and selenium are all there)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "headless Chromium not installed (Debian: apt-get install chromium)"
    if not shutil.which("chromedriver"):
        return "chromedriver not installed (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium, in the dev extra)"
    return None


def chromium_driver(download_dir: Path, profile: Path, width: int = 1280, height: int = 800):
    """Headless Chromium through selenium with a fresh profile, no background network, downloads into
    ``download_dir`` without asking, and a ``width`` x ``height`` viewport at one device pixel per px."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in CHROME_ARGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(download_dir)})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def open_page(driver, html: Path) -> None:
    """Load the page and wait (at most 10 s) until its script has built the worklist."""
    driver.get(html.resolve().as_uri())
    end = time.monotonic() + 10
    while driver.execute_script("return window.cytofmReady") is None:
        assert time.monotonic() < end, "the review page never set window.cytofmReady"
        time.sleep(0.05)


def case_order(driver, visible_only: bool = False) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#wl-body tr')].filter((tr) => !arguments[0] || !tr.hidden)"
        ".map((tr) => tr.children[1].textContent)", visible_only)


def open_case(driver, case: str) -> None:
    from selenium.webdriver.common.by import By

    [cell] = [td for td in driver.find_elements(By.CSS_SELECTOR, "#wl-body td.case")
              if td.get_attribute("textContent") == case]
    cell.click()  # the case's cell, not the row: a click at the middle of a wide row would scroll sideways


def review_in_browser(html: Path, download_dir: Path, keys: list[tuple[str, int, str]]) -> Path:
    """Open ``html``, and for each (case, cell index into the case's cells, key) open the case, click the
    first tile of that cell and press the key; then press "s" and return the downloaded corrections CSV."""
    from selenium.webdriver.common.by import By

    download_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium_driver(download_dir, Path(profile))
        try:
            open_page(driver, html)
            for case, cell, key in keys:
                if driver.execute_script("const h = document.querySelector('#panel h2');"
                                         "return h && h.textContent") != case:
                    open_case(driver, case)
                driver.find_element(By.CSS_SELECTOR, f'#panel .tile[data-cell="{cell}"]').click()
                driver.switch_to.active_element.send_keys(key)
            driver.switch_to.active_element.send_keys("s")
            return wait_for_file(download_dir / "corrections.csv")
        finally:
            driver.quit()


def wait_for_file(path: Path, timeout: float = 10) -> Path:
    end = time.monotonic() + timeout
    while not path.exists() or any(path.parent.glob("*.crdownload")):
        assert time.monotonic() < end, f"no {path.name} downloaded in {timeout} s"
        time.sleep(0.1)
    return path
