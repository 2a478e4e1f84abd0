"""The readouts a ViT encoder can give (``--pool``, ``#pool=``), apart from the module that computes them
(:class:`cytofm.models.encoder.ViTFeatures`) so that the command line lists them without importing torch."""

POOLS = ("cls", "mean", "cls+mean", "last4")
