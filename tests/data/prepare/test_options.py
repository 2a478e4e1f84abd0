"""Every option of ``cytofm prepare`` becomes config one way, through the table declared once
(``PREPARE_OPTIONS``): each option has its key, each key is a setting, and unset options leave the preset
and config file their say."""

from __future__ import annotations

import click
import typer

from cytofm.cli.main import app
from cytofm.config.loader import config_dict
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.options import PREPARE_OPTIONS, option_values, prepare_config

NOT_SETTINGS = {"ctx", "inputs", "out", "preset", "config"}  # what to read and where; not config keys


def test_every_prepare_option_has_one_config_key_and_each_key_is_a_setting():
    group = typer.main.get_command(app)
    params = {p.name for p in group.get_command(click.Context(group), "prepare").params}
    assert params - NOT_SETTINGS == set(PREPARE_OPTIONS)
    for key in PREPARE_OPTIONS.values():
        section, field = key.split(".")
        assert field in PrepareConfig.model_fields[section].annotation.model_fields, key


def test_options_as_the_command_line_gives_them():
    given = {"patch_size": 128, "whole": True, "roi": click.Path().convert("r.geojson", None, None),
             "cells": True, "qa": 0, "geojson": False, "stride": None, "labels_from_folders": False,
             "z": "edf", "out": "ignored"}
    assert option_values(given) == {"tiling": {"patch_size": 128, "mode": "whole", "roi": "r.geojson"},
                                    "cells": {"enabled": True}, "output": {"qa_thumbnails": 0},
                                    "zstack": {"z": "edf"}}


def test_options_sit_between_the_preset_and_the_overrides():
    cfg = prepare_config("wsi", ["tiling.stride=100"], options={"patch_size": 200, "stride": 50})
    assert cfg.tiling.patch_size == 200 and cfg.tiling.stride == 100
    assert config_dict(prepare_config(None)) == config_dict(PrepareConfig())
    default = prepare_config("default", options={"label_column": None, "qa": 0})
    assert default.output.qa_thumbnails == 0 and not default.metadata.labels_from_folders
