"""The readouts a ViT encoder can give (``extract --pool``, the ``#pool=`` spec suffix), by name: each
entry is the function that computes it from a timm ViT and an image batch, and ``width`` (its size in
multiples of the embedding width). Apart from the functions (:mod:`cytofm.models.vit_readouts`) so that
the command line and the extraction config list and check them without importing torch; a new readout is
its function and one line here."""

from __future__ import annotations

from cytofm.utils.registry import Registry

READOUTS: Registry = Registry("ViT readout")
READOUTS.add("cls", "cytofm.models.vit_readouts:cls_token",
             "the [CLS] token (the CytoFM/UNI/iBOT evaluation feature)", width=1)
READOUTS.add("mean", "cytofm.models.vit_readouts:patch_mean", "the mean of the patch tokens", width=1)
READOUTS.add("cls+mean", "cytofm.models.vit_readouts:cls_and_patch_mean",
             "the [CLS] token and the patch mean (DINOv2's linear-probe readout)", width=2)
READOUTS.add("last4", "cytofm.models.vit_readouts:last4",
             "the [CLS] of the last 4 blocks + the patch mean (DINO's linear-evaluation readout)", width=5)

POOLS = READOUTS.names()
"""The readout names, as ``Literal`` choices of the extraction config."""
