"""What the trainer asks of a self-supervised method, named in :mod:`cytofm.ssl.method_registry`.

The trainer owns everything that does not depend on the objective: data and views, optimiser, schedules,
precision, DDP, checkpoints, resume, logging. A method owns the networks (student and teacher: backbone
plus heads), the criterion (whose buffers, e.g. centres, are checkpointed) and one step's forward passes:
what the teacher sees, what the student sees, and how they meet in the loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.method_registry import method_class
from cytofm.ssl.model import init_teacher_from_student


@dataclass
class Views:
    """One batch on the training device: global crops (G*B, 3, H, W) view-major, their masks (G*B, h, w),
    local crops (L*B, 3, h', w') or None, B, and the (image, token) index of the masked tokens (made on the
    host by the loader; None: found from ``masks``)."""

    global_crops: torch.Tensor
    masks: torch.Tensor
    local_crops: torch.Tensor | None
    n_images: int
    index: tuple[torch.Tensor, torch.Tensor] | None = None

    def mask_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.index is not None:
            return self.index
        return self.masks.reshape(self.masks.shape[0], -1).nonzero(as_tuple=True)


class SSLMethod:
    """Base of a pretraining method. Subclasses set ``name`` and ``terms`` and implement :meth:`build`,
    :meth:`build_criterion` and :meth:`losses`."""

    name: ClassVar[str]
    terms: ClassVar[tuple[str, ...]]
    """Loss terms the step reports besides ``loss`` (logged to metrics.csv and the progress line)."""

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.student, self.teacher = self.build()
        self.criterion = self.build_criterion()

    def build(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def build_criterion(self) -> nn.Module:
        raise NotImplementedError

    def loss_settings(self) -> dict:
        """The settings every distillation loss of ours takes, by keyword, from the config (the losses order
        them differently; a keyword cannot be put in the wrong place)."""
        h, lo = self.cfg.head, self.cfg.loss
        return dict(out_dim=h.out_dim, patch_out_dim=h.out_dim, n_global=2, student_temp=lo.student_temp,
                    center_momentum=lo.center_momentum, lambda_cls=lo.lambda_cls,
                    lambda_patch=lo.lambda_patch, centering=lo.centering,
                    sinkhorn_iterations=lo.sinkhorn_iterations)

    def init_teacher(self) -> None:
        """Make the teacher a copy of the student (start of training, or after loading initial weights)."""
        init_teacher_from_student(self.teacher, self.student)

    def losses(self, student: Callable, views: Views, sched: dict[str, float],
               autocast: contextlib.AbstractContextManager) -> dict[str, torch.Tensor]:
        """One step's forward passes and loss. ``student`` is the callable to train through (the student,
        or its DDP wrapper); the networks run under ``autocast``, the loss outside it. Returns ``loss``
        (with graph), the detached ``terms``, ``teacher_entropy`` and ``teacher_spread``."""
        raise NotImplementedError

    def last_layer_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters frozen during ``head.freeze_last_layer_iters``."""
        return self.student.head.last_layer_parameters()


@torch.no_grad()
def teacher_spread(teacher_cls: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the batch std of normalised teacher logits: ~0 when every image gets the
    same output (collapse)."""
    return torch.nn.functional.normalize(teacher_cls.float(), dim=-1).std(dim=0).mean()


def build_method(cfg: PretrainConfig) -> SSLMethod:
    """The method ``cfg.method`` names (``cytofm.ssl.method_registry.METHODS``)."""
    return method_class(cfg.method)(cfg)
