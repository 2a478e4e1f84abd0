"""Typed settings of ``cytofm probe`` and ``cytofm mil`` (``--config FILE``, ``key=value``; the options'
defaults come from here). Lists also read as the comma-separated strings the options take."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from cytofm.config.loader import Section


def _comma_list(v):
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, int):
        return [v]
    return v


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]
IntList = Annotated[list[int], BeforeValidator(_comma_list)]
PROBE_METHODS = ("linear", "knn", "fewshot")


class EvalConfig(Section):
    features: str | None = None
    label: str | None = None
    out: str | None = None
    folds: int = Field(5, ge=2)
    seeds: IntList = [0, 1, 2]
    group_column: str | None = None
    split_column: str | None = None
    exclude: CommaList = []


class ProbeConfig(EvalConfig):
    methods: CommaList = ["linear", "knn"]
    knn_k: int = Field(20, ge=1)
    shots: int = Field(5, ge=1)


class MilConfig(EvalConfig):
    epochs: int = Field(50, ge=1)
    lr: float = Field(2e-4, gt=0)
    model: Literal["abmil", "transmil"] = "abmil"
    """As ``cytofm.mil.registry.MIL_MODELS`` (a test keeps them equal)."""
