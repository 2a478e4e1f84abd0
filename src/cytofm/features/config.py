"""Typed settings of the extraction stage, ``cytofm extract`` (``--config FILE``, ``key=value``; the options'
defaults come from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cytofm.config.loader import Section
from cytofm.models.readouts import POOLS

MODES = ("image", "tiles", "cells")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


class ExtractConfig(Section):
    input: str | None = None
    """A folder (class sub-folders become 'label'), a manifest, or a `cytofm prepare` output."""
    mode: Literal[MODES] | None = None
    out: str | None = None
    encoder: str = "cytofm"
    batch_size: int = Field(64, ge=1)
    tta: bool = False
    workers: int = Field(1, ge=0)
    label_column: str | None = None
    device: Literal[DEVICES] = "auto"
    precision: Literal[PRECISIONS] = "auto"
    pool: Literal[POOLS] = "cls"
    image_field_um: float | None = Field(None, gt=0)
    """``--mode image``: side of the square field, in micrometres, that images with a known um/px are read
    as (default: the median of the run's images' fields when their um/px differ). Recorded in the store
    (with ``image_mpp``), so ``predict`` reads new cases at the scale the model was trained at."""
    image_mpp: float | None = Field(None, gt=0)
    """``--mode image``: the um/px at which images are read whole (recorded when a run's images all had one;
    images of another um/px are then read at ``image_field_um``)."""
    cell_crop_um: float | None = Field(None, gt=0)
    """``--mode cells``: side of the crop centred on each cell, in micrometres (default: twice the typical
    cell diameter the folder was prepared with), so every cell is seen at one physical scale."""
