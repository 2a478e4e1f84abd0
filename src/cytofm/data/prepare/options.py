"""The options of ``cytofm prepare`` as config keys, declared once: the command line and the commands that
prepare on the way (``extract`` of a plain folder) turn options into a :class:`PrepareConfig` here, after
the preset and ``--config`` file and before ``key=value`` overrides."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from cytofm.config.loader import build_config
from cytofm.data.prepare.config import PrepareConfig

PREPARE_OPTIONS: dict[str, str] = {
    "patch_size": "tiling.patch_size",
    "stride": "tiling.stride",
    "whole": "tiling.mode",
    "mpp": "resolution.mpp",
    "target_mpp": "resolution.target_mpp",
    "magnification": "resolution.target_magnification",
    "labels_from_folders": "metadata.labels_from_folders",
    "label_column": "metadata.label_column",
    "organ": "metadata.organ",
    "preparation": "metadata.preparation",
    "stain": "metadata.stain",
    "duplicates": "metadata.duplicates",
    "roi": "tiling.roi",
    "geojson": "output.geojson",
    "cells": "cells.enabled",
    "cell_detector": "cells.detector",
    "materialize": "output.materialize",
    "workers": "output.workers",
    "qa": "output.qa_thumbnails",
    "z": "zstack.z",
}
"""Option name -> the config key it sets."""

OPTION_VALUES: dict[str, Callable[[Any], Any]] = {"whole": lambda v: "whole", "roi": str}
"""How an option's value is written where it is not the value itself (``--whole``: ``tiling.mode=whole``)."""


def option_values(options: Mapping[str, Any]) -> dict:
    """The config values of the options given, nested by section; None and False (a flag not set) mean not
    given, so the preset and config file keep their say. Names that are not prepare options are ignored."""
    values: dict = {}
    for name, key in PREPARE_OPTIONS.items():
        v = options.get(name)
        if v is None or v is False:
            continue
        section, _, field = key.partition(".")
        values.setdefault(section, {})[field] = OPTION_VALUES.get(name, lambda x: x)(v)
    return values


def prepare_config(preset: str | None = "default", overrides: list[str] | tuple[str, ...] = (),
                   file: str | os.PathLike | None = None,
                   options: Mapping[str, Any] | None = None) -> PrepareConfig:
    """Defaults < preset < ``file`` < options < overrides, as a validated :class:`PrepareConfig`."""
    return build_config(PrepareConfig, "prepare", preset, overrides, file=file,
                        values=option_values(options or {}))
