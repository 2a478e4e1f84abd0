import pytest
import yaml

from cytofm.config.loader import ConfigError, build_config, list_presets, parse_overrides, write_config
from cytofm.data.prepare.config import PrepareConfig


def test_parse_overrides_nested_and_typed():
    assert parse_overrides(["a.b=3", "a.c=0.5", "d=[1, 2]", "e=true", "f=text", "g="]) == {
        "a": {"b": 3, "c": 0.5}, "d": [1, 2], "e": True, "f": "text", "g": None}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_parse_overrides_rejects_malformed(bad):
    with pytest.raises(ConfigError):
        parse_overrides([bad])


def test_defaults_preset_file_overrides_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("tiling:\n  patch_size: 128\n  stride: 64\n")
    cfg = build_config(PrepareConfig, "prepare", "smear_fields", ["tiling.stride=32"], file=f)
    assert cfg.tiling.patch_size == 128  # file beats preset (96)
    assert cfg.tiling.stride == 32  # override beats file
    assert cfg.foreground.min_fraction == 0.05  # from the preset
    assert cfg.tiling.edge == "shift"  # schema default


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'tiling.patch_sise' "
                                          r"\(did you mean 'tiling.patch_size'\?\)"):
        build_config(PrepareConfig, overrides=["tiling.patch_sise=3"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"config key 'tiling.patch_size'.*integer.*'abc'"):
        build_config(PrepareConfig, overrides=["tiling.patch_size=abc"])
    with pytest.raises(ConfigError, match=r"config key 'foreground.min_fraction'"):
        build_config(PrepareConfig, overrides=["foreground.min_fraction=2"])
    with pytest.raises(ConfigError, match=r"tiling.mode"):
        build_config(PrepareConfig, overrides=["tiling.mode=grid"])


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="unknown prepare preset 'cell'.*did you mean 'cells'.*available"):
        build_config(PrepareConfig, "prepare", "cell")
    assert {"default", "cells", "wsi", "smear_fields"} <= set(list_presets("prepare"))


def test_bad_yaml_file_names_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("tiling: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        build_config(PrepareConfig, file=f)


def test_written_config_round_trips(tmp_path):
    cfg = build_config(PrepareConfig, "prepare", "wsi", ["tiling.patch_size=256", "metadata.organ=thyroid"])
    p = write_config(cfg, tmp_path / "config.yaml", command="cytofm prepare x")
    assert p.read_text().startswith("# resolved config written by cytofm")
    again = build_config(PrepareConfig, file=p)
    assert again == cfg
    assert yaml.safe_load(p.read_text())["resolution"]["target_mpp"] == 0.5
