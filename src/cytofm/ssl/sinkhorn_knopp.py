"""Sinkhorn-Knopp centring of teacher logits (DINOv2's replacement for the EMA centre).

The teacher's softmax targets are replaced by a doubly normalised assignment: every prototype receives
the same total mass over the batch (rows), and every sample's targets sum to one (columns). This spreads
the batch over the prototypes within each step instead of through a slowly moving centre, so it cannot
lag behind a fast-changing teacher. Three iterations, as in DINOv2. Written here because it is a dozen
lines of tensor algebra that must reduce its sums across processes; no library ships it as a function.

The normalisations run in the log domain: the same numbers as the reference's ``exp(logits / T)`` with
divisions, but no ``exp`` can overflow (logits above ~3.5 at T = 0.04) or underflow to a sample with no
target at all (logits far below the batch's largest), which can happen once the prototypes' weight-norm
gain is trained.

Reference: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024;
Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (SwAV), 2020.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _global_logsumexp(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """log sum exp of ``x`` over ``dim`` (all of it when None) and over the same tensor on every process."""
    if dim is None:
        local_max = x.max() if x.numel() else x.new_tensor(float("-inf"))
    else:
        local_max = x.amax(dim=dim, keepdim=True) if x.shape[dim] else x.new_full(
            tuple(1 if d == dim else s for d, s in enumerate(x.shape)), float("-inf"))
    m = local_max.clone()
    if _distributed():
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # nothing anywhere: any finite shift
    s = torch.exp(x - m).sum() if dim is None else torch.exp(x - m).sum(dim=dim, keepdim=True)
    if _distributed():
        dist.all_reduce(s)
    return m + torch.log(s)


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Targets (B, K) from teacher logits (B, K): each row sums to 1, and over the samples of every
    process together each prototype's column sums to B_total / K."""
    lq = (logits.float() / temperature).t()  # (K, B): log of the reference's Q
    k = lq.shape[0]
    if _distributed():  # the total over processes stays on the device: reading it back would be a wait
        n = lq.new_full((), float(lq.shape[1]))
        dist.all_reduce(n)
        log_n = torch.log(n)  # -inf only where every process is empty, and then every tensor here is empty
    elif lq.shape[1] == 0:
        return lq.t().exp()
    else:
        log_n = math.log(lq.shape[1])
    lq = lq - _global_logsumexp(lq, None)  # the whole matrix sums to 1
    for _ in range(iterations):
        lq = lq - _global_logsumexp(lq, 1) - math.log(k)  # every prototype 1/K of the mass
        lq = lq - torch.logsumexp(lq, dim=0, keepdim=True) - log_n  # every sample 1/B of it
    return (lq + log_n).exp().t()
