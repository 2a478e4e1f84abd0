"""kNN monitor: frozen teacher [CLS] features of a small labelled set, scored by k-nearest neighbours (the
evaluation's kNN probe, handed in by the command line, so that there is one kNN).

Cheap evidence during pretraining that features become more linearly/locally separable, on real labelled
cells (e.g. Herlev), long before any downstream evaluation is run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.prepared import is_prepared_dir, load_prepared
from cytofm.data.sources.inputs import discover
from cytofm.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from cytofm.utils.errors import InputError


def load_labelled(path: str, label: str, size: int, max_items: int = 1000,
                  seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Images (N, 3, size, size), normalised, and their labels; a seeded subsample above ``max_items``."""
    # (label, function returning the RGB image): a prepared dataset gives its first kept patch per source
    if is_prepared_dir(path):
        items = [(it.meta.get(label, ""), lambda it=it: next(it.patches())[1]) for it in load_prepared(path)]
    else:
        from pathlib import Path

        meta = ({"label_column": label} if str(path).endswith(".csv")
                else {"labels_from_folders": Path(path).is_dir()})
        found, _, _ = discover([str(path)], PrepareConfig.model_validate({"metadata": meta}))
        items = [(it.meta.get("label", it.meta.get(label, "")),
                  lambda p=it.path: np.asarray(Image.open(p).convert("RGB")))
                 for it in found]
    items = [it for it in items if it[0]]
    if len(items) < 10:
        raise InputError(f"{path}: fewer than 10 items with a '{label}' label for the kNN monitor")
    rng = np.random.default_rng(seed)
    if len(items) > max_items:
        items = [items[i] for i in sorted(rng.choice(len(items), max_items, replace=False))]
    ims = [np.asarray(Image.fromarray(read()).resize((size, size), Image.Resampling.BICUBIC))
           for _, read in items]
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std, np.array([lab for lab, _ in items])


@torch.no_grad()
def embed(backbone: torch.nn.Module, x: torch.Tensor, device: torch.device, dtype=None,
          batch: int = 128) -> np.ndarray:
    backbone.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device)
        if dtype is not None:
            with torch.autocast(device.type, dtype=dtype):
                cls, _ = backbone(xb)
        else:
            cls, _ = backbone(xb)
        out.append(torch.nn.functional.normalize(cls.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


# probe(train features, train labels 0..C-1, test features, C, k) -> (test items, C) probabilities
Probe = Callable[..., np.ndarray]


def knn_balanced_accuracy(feats: np.ndarray, labels: np.ndarray, probe: Probe, k: int = 20, folds: int = 5,
                          seed: int = 0) -> float:
    """Balanced accuracy of ``probe`` (the evaluation's cosine kNN, given by the caller: ssl may not import
    eval) over stratified k-fold, one ``k`` for every fold (at most the smallest training fold)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    classes, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
    folds = max(2, min(folds, int(counts.min())))
    k = min(k, len(y) - len(y) // folds - 1)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = [balanced_accuracy_score(y[te], probe(feats[tr], y[tr], feats[te], len(classes), k=k).argmax(1))
              for tr, te in cv.split(feats, y)]
    return float(np.mean(scores))


class KNNMonitor:
    """A backbone's [CLS] features of a labelled set (loaded once) scored by :func:`knn_balanced_accuracy`
    with ``probe``."""

    def __init__(self, path: str, label: str, size: int, device: torch.device, dtype=None, *, probe: Probe):
        self.x, self.y = load_labelled(path, label, size)
        self.path, self.device, self.dtype, self.probe = path, device, dtype, probe

    def __call__(self, backbone: torch.nn.Module) -> float:
        return knn_balanced_accuracy(embed(backbone, self.x, self.device, self.dtype), self.y, self.probe)

    def logged(self, backbone: torch.nn.Module, iteration: int, log) -> float:
        """The score as metrics.csv records it (4 decimals), said in the log."""
        score = round(self(backbone), 4)
        log(f"iteration {iteration}: kNN balanced accuracy {score:.3f} on {self.path}")
        return score
