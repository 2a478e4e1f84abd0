"""Typed settings of ``cytofm heatmap`` and ``cytofm umap`` (``--config FILE``, ``key=value``; the options'
defaults come from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cytofm.config.loader import Section


class HeatmapConfig(Section):
    inputs: list[str] = []
    out: str | None = None
    encoder: str = "cytofm"
    mil: str | None = None
    seed: int = 0
    boxes: str | None = None
    box_class: str = "WBC"
    limit: int = Field(12, ge=0)
    tiles: Literal["auto", "on", "off"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class UmapConfig(Section):
    features: str | None = None
    color_by: str | None = None
    out: str | None = None
    method: Literal["auto", "umap", "tsne", "pca"] = "auto"
    max_items: int = Field(5000, ge=2)
