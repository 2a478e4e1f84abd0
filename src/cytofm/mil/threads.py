"""Torch's intra-op threads sized to the work of one MIL training step.

A small model (ABMIL over bags of a few patches) does matmuls of a few million multiply-adds per step;
splitting them over threads costs more than it gains, and on cores other programs are busy with it costs
far more: a waiting OpenMP thread loses its time slice. Measured on 2 busy cores (load 2-4; one ABMIL step,
batch 8, 384 -> 256): 1 thread 4 ms, 2 threads 62 ms at 9 instances a bag (7M multiply-adds); 43 vs 330 ms
at 128 (100M); 360 vs 700 ms at 2048 (1.6G); 2.0 vs 2.9 s at 8192 (6.4G). The user's choice wins: the
``threads`` setting, or ``OMP_NUM_THREADS`` (which torch read at start). The choice changes no number: it
depends only on the settings and the data, never on the machine's load."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from cytofm.mil.registry import MIL_MODELS

SMALL_STEP = 2e9
"""Multiply-adds per training step under which one thread is used (2 threads lost at every size up to
6.4G on shared cores, by a factor falling from 16 to 1.4; a second thread gains at most 2x on idle ones)."""


def step_work(lengths: list[int], in_dim: int, hidden: int, batch_size: int,
              model: str | None = None) -> float:
    """Multiply-adds of a step's largest matmuls: the instances of a padded batch (a batch pads to its
    longest bag: the 90th percentile of bag lengths, N) projected from ``in_dim`` (D) to ``hidden`` (H), and
    for a model whose registry entry says ``attention="quadratic"`` (TransMIL) the N x N attention over
    them too: batch x (N x D x H + N^2 x H). Without it a TransMIL step over bags of thousands would be
    counted small and pinned to one thread."""
    longest = float(np.percentile(lengths, 90)) if len(lengths) else 0.0
    per_bag = longest * in_dim * hidden
    if model is not None and MIL_MODELS.entry(model).meta.get("attention") == "quadratic":
        per_bag += longest * longest * hidden
    return min(batch_size, max(len(lengths), 1)) * per_bag


def thread_choice(work: float, explicit: int | None = None) -> tuple[int | None, str]:
    """(threads to set, or None to leave torch's; the reason in words)."""
    if explicit is not None:
        return int(explicit), f"threads={explicit} as set"
    if os.environ.get("OMP_NUM_THREADS"):
        return None, f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} as set"
    if work < SMALL_STEP:
        return 1, (f"a small model: ~{work / 1e6:.3g}M multiply-adds a step, under {SMALL_STEP / 1e6:.0f}M, "
                   "where one thread is faster; threads=N or OMP_NUM_THREADS chooses")
    return None, f"~{work / 1e6:.3g}M multiply-adds a step: torch's default"


@contextmanager
def sized_threads(work: float, explicit: int | None = None, log=None) -> Iterator[int]:
    """Inside the block torch uses the threads :func:`thread_choice` gives (said through ``log``); the
    previous setting comes back on exit, whatever happened inside."""
    prev = torch.get_num_threads()
    n, why = thread_choice(work, explicit)
    if n is not None:
        torch.set_num_threads(n)
    if log is not None:
        log(f"torch threads: {torch.get_num_threads()} ({why})")
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(prev)
