"""What the processes of a distributed pretraining run do together between two steps: gather an object
from every rank (each rank's RNG streams for the checkpoint), agree on a flag any rank raised (a stop must
be taken together). Without a process group each is what one process would do alone."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather(obj) -> list:
    """``obj`` of every rank, in rank order."""
    if not distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
    """Each flag true on every rank as soon as one rank says so."""
    if not distributed():
        return flags
    on = device if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=on)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v > 0) for v in t.tolist())
