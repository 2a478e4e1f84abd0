"""The MIL models cytofm trains, by name (``model:`` in a benchmark task, ``cytofm mil --model``).

Every model takes ``(B, N, D)`` padded bags with a ``(B, N)`` mask and returns logits and a per-instance
attention that sums to 1 over the real instances (so heatmaps and localisation scores work for all), and
has ``set_standardisation(mean, std)``. ``order_invariant`` says whether the model promises the same
output for any instance order (the invariance tests run on the models that do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cytofm.mil.abmil import GatedABMIL
from cytofm.mil.transmil import TransMIL
from cytofm.utils.registry import Registry


@dataclass(frozen=True)
class MILModel:
    name: str
    build: Callable[..., nn.Module]  # (in_dim, n_classes, hidden, attn_dim, dropout) -> module
    order_invariant: bool
    reference: str


MIL_MODELS: Registry[MILModel] = Registry("MIL model")
MIL_MODELS.add("abmil", MILModel("abmil", lambda d, c, hidden, attn_dim, dropout: GatedABMIL(d, c, hidden, attn_dim, dropout),
                                 True, "Ilse et al., ICML 2018"), "gated attention MIL (Ilse et al., ICML 2018)")
MIL_MODELS.add("transmil", MILModel("transmil", lambda d, c, hidden, attn_dim, dropout: TransMIL(d, c, hidden, dropout=dropout),
                                    False, "Shao et al., NeurIPS 2021"),
               "transformer MIL with a pyramid position encoding (Shao et al., NeurIPS 2021)")
