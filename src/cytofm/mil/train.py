"""Training a MIL model (``cytofm.mil.registry``) on bags of frozen features: AdamW, class-balanced loss,
early stopping on validation."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cytofm.mil.abmil import pad_bags
from cytofm.mil.config import MILTrainConfig
from cytofm.mil.registry import MIL_MODELS


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 over the classes present."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _epoch_batches(n: int, bs: int, rng: np.random.Generator):
    idx = rng.permutation(n)
    for i in range(0, n, bs):
        yield idx[i:i + bs]


@torch.no_grad()
def predict(model: nn.Module, bags: list[torch.Tensor],
            batch_size: int = 16) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class probabilities (N, C) and each bag's attention over its own instances."""
    model.eval()
    probs, attns = [], []
    for i in range(0, len(bags), batch_size):
        chunk = bags[i:i + batch_size]
        x, m = pad_bags(chunk)
        logits, a = model(x, m)
        probs.append(torch.softmax(logits, -1).numpy())
        attns += [a[j, : len(b)].numpy() for j, b in enumerate(chunk)]
    return np.concatenate(probs), attns


def train_mil(train: list[torch.Tensor], y_train: np.ndarray, val: list[torch.Tensor] | None,
              y_val: np.ndarray | None, n_classes: int, cfg: MILTrainConfig = MILTrainConfig()) -> nn.Module:
    """Fit ``cfg.model`` on ``train``; keep the weights with the lowest validation loss (or the last, without
    ``val``)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = MIL_MODELS.get(cfg.model)(train[0].shape[1], n_classes, cfg.hidden, cfg.attn_dim,
                                            cfg.dropout)
    if cfg.standardise:
        inst = torch.cat(train).double()
        model.set_standardisation(inst.mean(0).float(),
                                  inst.std(0).float() if len(inst) > 1 else torch.ones(inst.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weight = class_weights(y_train, n_classes) if cfg.balanced else None
    yt = torch.as_tensor(y_train, dtype=torch.long)
    best, best_loss, wait = copy.deepcopy(model.state_dict()), float("inf"), 0
    for _ in range(cfg.epochs):
        model.train()
        for idx in _epoch_batches(len(train), cfg.batch_size, rng):
            x, m = pad_bags([train[i] for i in idx])
            logits, _ = model(x, m)
            loss = F.cross_entropy(logits, yt[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if val is not None and len(val):
            p, _ = predict(model, val)
            vl = F.nll_loss(torch.log(torch.as_tensor(p).clamp_min(1e-8)),
                            torch.as_tensor(y_val, dtype=torch.long), weight=weight).item()
            if vl < best_loss - 1e-4:
                best, best_loss, wait = copy.deepcopy(model.state_dict()), vl, 0
            else:
                wait += 1
                if wait >= cfg.patience:
                    break
        else:
            best = copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    model.eval()
    return model

