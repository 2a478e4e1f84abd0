"""The MIL models cytofm trains, by name (``model:`` in a benchmark task, ``cytofm mil --model``).

Every model takes ``(B, N, D)`` padded bags with a ``(B, N)`` mask and returns logits and a per-instance
attention that sums to 1 over the real instances (so heatmaps and localisation scores work for all), and
has ``set_standardisation(mean, std)``. ``order_invariant`` says whether the model promises the same
output for any instance order (the invariance tests run on the models that do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cytofm.utils.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class MILModel:
    name: str
    build: Callable[..., nn.Module]  # (in_dim, n_classes, hidden, attn_dim, dropout) -> module
    order_invariant: bool
    reference: str


# the builders import their module when called: the command line lists the names without importing torch
def _abmil(d: int, c: int, hidden: int, attn_dim: int, dropout: float) -> nn.Module:
    from cytofm.mil.abmil import GatedABMIL

    return GatedABMIL(d, c, hidden, attn_dim, dropout)


def _transmil(d: int, c: int, hidden: int, attn_dim: int, dropout: float) -> nn.Module:
    from cytofm.mil.transmil import TransMIL

    return TransMIL(d, c, hidden, dropout=dropout)


MIL_MODELS: Registry[MILModel] = Registry("MIL model")
MIL_MODELS.add("abmil", MILModel("abmil", _abmil, True, "Ilse et al., ICML 2018"),
               "gated attention MIL (Ilse et al., ICML 2018)")
MIL_MODELS.add("transmil", MILModel("transmil", _transmil, False, "Shao et al., NeurIPS 2021"),
               "transformer MIL with a pyramid position encoding (Shao et al., NeurIPS 2021)")
