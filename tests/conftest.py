from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(os.environ.get("CYTOFM_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with a message saying what is missing."""
    p = SHARED_DATA / name
    if not (p / "manifest.csv").is_file():
        pytest.skip(f"real data not found at {p} (set CYTOFM_SHARED_DATA to the shared/data folder)")
    return p


def smear(h: int = 240, w: int = 320, cells=((80, 60, 25), (200, 150, 30)), color=(120, 80, 160), seed: int = 0):
    """A synthetic smear field: slightly noisy off-white glass with stained disks; returns (rgb, truth mask)."""
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
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    import tempfile

    with tempfile.TemporaryDirectory() as profile:  # a fresh profile; no background connections to fail on
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", f"file://{html}"], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    return img
