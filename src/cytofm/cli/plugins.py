"""The package's plug points as the command line offers them: one line each, the kind, where its registry
lives (``"module:NAME"``, imported only when asked for, so ``--help`` of an unrelated command pays nothing)
and the options that offer its entries (``"command --option"``, or ``"command key="`` for a setting given
as ``key=value``; none where the entry is found from the file, as an input kind is). ``cytofm doctor``
lists every entry of every registry here, and
``tests/cli/test_registry_choices.py`` checks each option offers every entry: a new plug point is one more
line below, a new entry in a registry needs no line here."""

from __future__ import annotations

import importlib
from typing import NamedTuple

from cytofm.utils.registry import Registry


class PlugPoint(NamedTuple):
    kind: str
    registry: str
    options: tuple[str, ...]

    def load(self) -> Registry:
        """The registry (its module imported now; its entries' targets are not)."""
        module, _, name = self.registry.partition(":")
        return getattr(importlib.import_module(module), name)


PLUG_POINTS: tuple[PlugPoint, ...] = (
    PlugPoint("encoder family", "cytofm.models.registry:ENCODER_FAMILIES", ("extract --encoder",)),
    PlugPoint("SSL method", "cytofm.ssl.method_registry:METHODS", ("pretrain method=",)),
    PlugPoint("MIL model", "cytofm.mil.registry:MIL_MODELS", ("mil --model",)),
    PlugPoint("cell detector", "cytofm.data.cells.registry:CELL_DETECTORS", ("prepare --cell-detector",)),
    PlugPoint("feature format", "cytofm.features.formats.registry:FEATURE_FORMATS",
              ("convert --to", "convert --from")),
    PlugPoint("probe method", "cytofm.eval.probe_registry:PROBES", ("probe --methods",)),
    PlugPoint("ViT readout", "cytofm.models.readouts:READOUTS", ("extract --pool",)),
    # no option chooses these: a file's kind and its z-stack reader are found from the file itself
    PlugPoint("input kind", "cytofm.data.sources.kinds:INPUT_KINDS", ()),
    PlugPoint("z-stack reader", "cytofm.data.sources.zstack.registry:ZSTACK_READERS", ()),
)
