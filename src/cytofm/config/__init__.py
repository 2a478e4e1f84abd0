"""Typed configuration: pydantic schemas, YAML presets shipped in the package, ``key=value`` overrides."""

from cytofm.config.loader import (
    ConfigError,
    Section,
    build_config,
    config_hash,
    list_presets,
    parse_overrides,
    write_config,
)

__all__ = [
    "ConfigError",
    "Section",
    "build_config",
    "config_hash",
    "list_presets",
    "parse_overrides",
    "write_config",
]
