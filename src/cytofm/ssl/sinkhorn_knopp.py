"""Sinkhorn-Knopp centring of teacher logits (DINOv2's replacement for the EMA centre).

The teacher's softmax targets are replaced by a doubly normalised assignment: every prototype receives
the same total mass over the batch (rows), and every sample's targets sum to one (columns). This spreads
the batch over the prototypes within each step instead of through a slowly moving centre, so it cannot
lag behind a fast-changing teacher. Three iterations, as in DINOv2. Written here because it is a dozen
lines of tensor algebra that must all-reduce its sums across processes; no library ships it as a function.

Reference: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024;
Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (SwAV), 2020.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Targets (B, K) from teacher logits (B, K): each row sums to 1, and over the samples of every
    process together each prototype's column sums to B_total / K.

    ``exp(logits / T)`` is computed after subtracting the global maximum: the normalisation removes any
    constant factor, so this changes nothing but keeps exp from overflowing at T = 0.04 (the reference
    exponentiates directly and relies on logits being cosines)."""
    x = logits.float() / temperature
    peak = _all_reduce_max(x.max() if x.numel() else x.new_tensor(float("-inf")))
    q = torch.exp(x - peak).t()  # (K, B)
    k = q.shape[0]
    n = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    if n.item() == 0:
        return q.t()
    tiny = torch.finfo(q.dtype).tiny  # a prototype (or sample) whose exp underflowed stays 0, not NaN
    q /= _all_reduce(q.sum()).clamp_min(tiny)
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(tiny)  # rows: every prototype the same mass ...
        q /= k  # ... 1/K of the total
        q /= q.sum(dim=0, keepdim=True).clamp_min(tiny)  # columns: every sample sums to ...
        q /= n  # ... 1/B of the total
    q *= n
    return q.t()


def _all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t
