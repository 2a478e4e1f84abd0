"""Does iBOT pretraining learn? Herlev 7-class linear probe on frozen [CLS] features: run vs random init.

Usage: python benchmarks/ssl_learning_signal.py RUN_DIR [HERLEV_DIR]

Features are the teacher backbone's [CLS] token at the run's global crop size (ImageNet normalisation);
the probe is a standardised logistic regression, 5-fold stratified CV, balanced accuracy (mean +- sd).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cytofm.ssl.backbone import MaskedViT, create_vit
from cytofm.ssl.checkpoint import CHECKPOINT, load_checkpoint
from cytofm.ssl.config import PretrainConfig

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def herlev(root: Path, label: str = "label7") -> tuple[list[Path], np.ndarray]:
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    return [root / r["image"] for r in rows], np.array([r[label] for r in rows])


@torch.no_grad()
def features(vit: torch.nn.Module, paths: list[Path], size: int, batch: int = 64) -> np.ndarray:
    net = MaskedViT(vit).eval()
    out = []
    for i in range(0, len(paths), batch):
        ims = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for p in paths[i:i + batch]]
        x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cls, _ = net((x - MEAN) / STD)
        out.append(cls.float().numpy())
    return np.concatenate(out)


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    s = cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="balanced_accuracy")
    return float(s.mean()), float(s.std())


def compare(run: Path, herlev_root: Path) -> dict[str, tuple[float, float]]:
    ck = load_checkpoint(run / CHECKPOINT)
    cfg = PretrainConfig.model_validate(ck["config"])
    paths, y = herlev(herlev_root)
    trained = create_vit(cfg.model, cfg.crops.global_size, drop_path=0.0)
    trained.load_state_dict(ck["teacher_backbone"])
    torch.manual_seed(0)
    random_vit = create_vit(cfg.model, cfg.crops.global_size, drop_path=0.0)
    size = cfg.crops.global_size
    return {"pretrained": probe(features(trained, paths, size), y), "random": probe(features(random_vit, paths, size), y),
            "iteration": (ck["iteration"], 0.0)}


if __name__ == "__main__":
    run = Path(sys.argv[1])
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "herlev"
    r = compare(run, root)
    print(f"checkpoint at iteration {r['iteration'][0]}")
    for k in ("pretrained", "random"):
        print(f"Herlev 7-class linear probe, {k:10s}: balanced accuracy {r[k][0]:.3f} +- {r[k][1]:.3f} (5-fold)")
    print(f"difference: {r['pretrained'][0] - r['random'][0]:+.3f}")
