"""Typed settings of the evaluation stage: ``cytofm probe`` and ``cytofm mil`` (``--config FILE``,
``key=value``; the options' defaults come from here) and the benchmark's YAML (tasks x encoders). Lists also
read as the comma-separated strings the options take. MIL model names are checked against
``cytofm.mil.registry.MIL_MODELS``, the registry the ``--model`` choices come from, and probe names against
``cytofm.eval.probe_registry.PROBES``, the one ``--methods`` lists."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from cytofm.config.loader import Section
from cytofm.eval.probe_registry import known_probes
from cytofm.mil.registry import MIL_MODELS


def _comma_list(v):
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, int):
        return [v]
    return v


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]
IntList = Annotated[list[int], BeforeValidator(_comma_list)]
PREDICT_USES = ("ensemble", "refit")
"""What ``cytofm predict --use`` applies: the cross-validation models, or the one refit on every item."""
MilModelName = Annotated[str, AfterValidator(MIL_MODELS.validate)]
ProbeNames = Annotated[list[str], AfterValidator(known_probes)]
"""Names of ``cytofm.eval.probe_registry.PROBES`` (an unknown one refused with the closest)."""


class EvalConfig(Section):
    features: str | None = None
    label: str | None = None
    out: str | None = None
    folds: int = Field(5, ge=2)
    seeds: IntList = [0, 1, 2]
    group_column: str | None = None
    split_column: str | None = None
    exclude: CommaList = []
    positive_class: str | None = None
    """Two-class tasks: the class the operating point screens for (default: the second in sorted order)."""
    group_duplicates: bool = True
    """Keep near-duplicate source images (``cytofm.data.provenance.duplicates``) on one side of every split,
    as the benchmark does (``--no-group-duplicates`` turns it off)."""


class ProbeConfig(EvalConfig):
    methods: Annotated[ProbeNames, BeforeValidator(_comma_list)] = ["linear", "knn"]
    knn_k: int = Field(20, ge=1)
    shots: int = Field(5, ge=1)
    refit: bool = False
    """Also fit each saved probe (linear, kNN) on every labelled item (``cytofm predict --use refit``)."""
    target_sensitivity: float = Field(0.95, gt=0, le=1)
    """Two-class tasks: the operating point recorded in ``model.json`` keeps this sensitivity out of fold."""
    cell_points: str | None = None
    """A table of labelled cells (``image``, ``x``, ``y`` in level-0 pixels, the label column) for a store
    extracted with ``--mode cells``: each detected cell matched to a point becomes an item (its field the
    group), so the probe classifies cells and ``cytofm predict`` counts them by class."""


class MilConfig(EvalConfig):
    epochs: int = Field(50, ge=1)
    lr: float = Field(2e-4, gt=0)
    model: MilModelName = "abmil"
    """A name of ``cytofm.mil.registry.MIL_MODELS``."""
    refit: bool = False
    """Also train one model on every labelled item (``cytofm predict --use refit``)."""
    target_sensitivity: float = Field(0.95, gt=0, le=1)
    """Two-class tasks: the operating point recorded in ``model.json`` keeps this sensitivity out of fold."""
    threads: int | None = Field(None, ge=1)
    """Torch threads for training (default: sized to the model, ``cytofm.mil.threads``; one for small
    models; ``OMP_NUM_THREADS`` is also obeyed)."""


class TaskConfig(Section):
    name: str
    data: str
    """A folder, manifest or prepared dataset (relative paths are relative to the benchmark YAML)."""
    label: str
    mode: Literal["image", "tiles", "cells"] = "image"
    """``cells``: the data's fields prepared with cell detection (``prepare_preset`` e.g. ``smear_cells``,
    ``mpp``); MIL reads each field as the bag of its cells, and with ``points`` every detected cell matched
    to a labelled point is an item of its own."""
    prepare_preset: str = "default"
    """Preset used to prepare plain images in ``tiles`` and ``cells`` mode."""
    mpp: float | None = Field(None, gt=0)
    """Micrometres per pixel of the task's images (cell detection needs it)."""
    eval: Literal["probe", "mil"] = "probe"
    methods: ProbeNames = ["linear", "knn"]
    folds: int = Field(5, ge=2)
    seeds: list[int] = [0, 1, 2]
    group_column: str | None = None
    group_if_present: list[str] = []
    """Columns tried in order when ``group_column`` is not set: the first one the data has groups the splits
    (preparation maps patient, case and subject columns to ``specimen``)."""
    group_duplicates: bool = True
    """Keep near-duplicate images (``cytofm.data.provenance.duplicates``) on one side of every split."""
    split_column: str | None = None
    exclude: list[str] = []
    expected_counts: dict[str, int] = {}
    """Items per class the task should have (e.g. a published data set); a difference is warned about."""
    epochs: int = 50
    model: MilModelName = "abmil"
    """MIL tasks: the model, a name of ``cytofm.mil.registry.MIL_MODELS``."""
    boxes: str | None = None
    """MIL tasks: a folder of Pascal VOC XML files named like the sources; the ABMIL attention is scored
    against them (attention mass on the object and pointing game, with their chance levels)."""
    box_class: str = "WBC"
    split: str | None = None
    """A fixed split to evaluate one part of: ``cytofm:<dataset>`` (a split shipped with cytofm, e.g.
    ``cytofm:herlev``) or a CSV ``image,part`` (paths as in the data's manifest)."""
    part: Literal["pretrain", "eval"] = "eval"
    points: str | None = None
    """A point table ``image,x,y,<label>`` (paths relative to its folder): the items are ``crop_size``
    crops centred on the points (cell-level tasks on annotated fields); group splits by ``field``."""
    crop_size: int = Field(80, ge=8)


class BenchmarkConfig(Section):
    encoders: list[str]
    tasks: list[TaskConfig]
    batch_size: int = 64
    baselines: list[str] = ["random:*", "handcrafted"]
    """fnmatch patterns of the encoders every other encoder is compared with (besides the first encoder)."""
    comparisons: list[str] | None = None
    """Explicit claims, ``"A vs B"``; replaces the default pairs (every encoder vs the first and vs each
    baseline)."""
    combine: list[str] = []
    """Feature sets side by side, ``"A+B"`` (two of ``encoders``, e.g. ``cytofm+morphometrics``): the two
    stores' features of the same instances concatenated, evaluated as one more encoder."""
    metric: str = "balanced_accuracy"
    alpha: float = 0.05
    skip_missing: bool = False
    """Go on past an encoder that cannot be built (missing weights, a misspelt name) or a task that cannot be
    evaluated, listing them in results.md and summary.md (``--keep-going``); otherwise the benchmark stops
    there with the reason, its finished extractions kept for the next run."""
