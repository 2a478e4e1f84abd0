"""Does iBOT pretraining learn? Herlev 7-class linear probe on frozen [CLS] features: run vs random init.

Usage: python benchmarks/ssl_learning_signal.py RUN_DIR [HERLEV_DIR]

Features are the teacher backbone's [CLS] token at the run's global crop size (ImageNet normalisation,
L2-normalised); the probe is a standardised logistic regression, 5-fold stratified CV, balanced accuracy
(mean +- sd over folds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cytofm.ssl.backbone import MaskedViT, create_vit
from cytofm.ssl.checkpoint import CHECKPOINT, load_checkpoint
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.monitor import embed, load_labelled


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    s = cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="balanced_accuracy")
    return float(s.mean()), float(s.std())


def compare(run: Path, herlev_root: Path) -> dict[str, tuple[float, float]]:
    ck = load_checkpoint(run / CHECKPOINT)
    cfg = PretrainConfig.model_validate(ck["config"])
    size = cfg.crops.global_size
    x, y = load_labelled(str(herlev_root / "manifest.csv"), "label7", size, max_items=100_000)
    trained = create_vit(cfg.model, size, drop_path=0.0)
    trained.load_state_dict(ck["teacher_backbone"])
    torch.manual_seed(0)
    random_vit = create_vit(cfg.model, size, drop_path=0.0)
    cpu = torch.device("cpu")
    feats = {name: embed(MaskedViT(v), x, cpu, torch.bfloat16) for name, v in (("pretrained", trained), ("random", random_vit))}
    return {"pretrained": probe(feats["pretrained"], y), "random": probe(feats["random"], y), "iteration": (ck["iteration"], 0.0)}


if __name__ == "__main__":
    run = Path(sys.argv[1])
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "herlev"
    r = compare(run, root)
    print(f"checkpoint at iteration {r['iteration'][0]}")
    for k in ("pretrained", "random"):
        print(f"Herlev 7-class linear probe, {k:10s}: balanced accuracy {r[k][0]:.3f} +- {r[k][1]:.3f} (5-fold)")
    print(f"difference: {r['pretrained'][0] - r['random'][0]:+.3f}")
