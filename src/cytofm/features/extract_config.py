"""Typed settings of ``cytofm extract`` (``--config FILE``, ``key=value``; the options' defaults come from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cytofm.config.loader import Section

MODES = ("image", "tiles")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
POOLS = ("cls", "mean", "cls+mean", "last4")  # as cytofm.models.encoder.POOLS (a test keeps them equal)


class ExtractConfig(Section):
    input: str | None = None
    """A folder (class sub-folders become 'label'), a manifest, or a `cytofm prepare` output."""
    mode: Literal["image", "tiles"] | None = None
    out: str | None = None
    encoder: str = "cytofm"
    batch_size: int = Field(64, ge=1)
    tta: bool = False
    workers: int = Field(1, ge=0)
    label_column: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    pool: Literal["cls", "mean", "cls+mean", "last4"] = "cls"
