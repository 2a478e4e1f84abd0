"""Resolve a typed config from schema defaults, a preset, a YAML file and ``key=value`` overrides.

Later sources win: defaults < preset < file < overrides. Unknown keys and wrong types are refused
with a message naming the dotted key (and the closest valid key for a typo), because a silently
ignored ``train.iteratons=1000`` costs a user a day of compute.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from cytofm.utils.errors import UserError

T = TypeVar("T", bound=BaseModel)


class ConfigError(UserError, ValueError):
    """A config problem a user can fix; the message names the key or file."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}"
        keys.append(full)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, full + ".")
    return keys


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]"]`` -> ``{"a": {"b": 3}, "c": [1, 2]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier value for '{part}'")
            node = nxt
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def _preset_dir(group: str):
    return resources.files("cytofm.config").joinpath("presets", group)


def list_presets(group: str) -> list[str]:
    """Names of the presets shipped for a command group (e.g. ``prepare``, ``pretrain``)."""
    d = _preset_dir(group)
    if not d.is_dir():
        return []
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))


def load_preset(group: str, name: str) -> dict[str, Any]:
    """A preset by name, or a YAML file by path. Presets may name a ``base`` preset to extend."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        data = read_yaml(name)
    else:
        f = _preset_dir(group).joinpath(f"{name}.yaml")
        if not f.is_file():
            avail = ", ".join(list_presets(group)) or "none"
            close = difflib.get_close_matches(name, list_presets(group), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {group} preset '{name}'{hint}; available: {avail}")
        with resources.as_file(f) as p:
            data = read_yaml(p)
    base = data.pop("base", None)
    if base:
        data = deep_merge(load_preset(group, base), data)
    return data


def format_validation_error(err: ValidationError, schema: type[BaseModel], source: str = "",
                            names: dict[str, str] | None = None) -> str:
    """One line per problem; ``names`` maps a key to what the user typed
    (``batch_size`` -> ``--batch-size``)."""
    known = _known_keys(schema)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"unknown config key '{key}'{hint}")
            continue
        what = (names or {}).get(key, f"config key '{key}'")
        got = e.get("input")
        bound = {"greater_than_equal": "at least {ge}", "greater_than": "more than {gt}",
                 "less_than_equal": "at most {le}", "less_than": "less than {lt}"}.get(e["type"])
        if bound is not None:
            lines.append(f"{what} must be {bound.format(**e.get('ctx', {}))}, not {got!r}")
        else:
            got_s = f", got {got!r}" if not isinstance(got, dict) else ""
            lines.append(f"{what}: {e['msg']}{got_s}")
    prefix = f"{source}: " if source else ""
    return prefix + "; ".join(lines)


def build_config(
    schema: type[T],
    group: str | None = None,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    file: str | os.PathLike | None = None,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> T:
    """Resolve defaults < preset < file < values < overrides into a validated ``schema`` instance."""
    data: dict[str, Any] = {}
    if preset:
        data = deep_merge(data, load_preset(group or "", preset))
    if file:
        data = deep_merge(data, read_yaml(file))
    if values:
        data = deep_merge(data, values)
    data = deep_merge(data, parse_overrides(list(overrides)))
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, schema, names=names)) from None


def config_dict(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    data = config_dict(cfg) if isinstance(cfg, BaseModel) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def write_config(cfg: BaseModel, path: str | os.PathLike, command: str = "") -> Path:
    """Write the fully resolved config as YAML next to an output, so a run can be reproduced.

    The file is itself a valid config (``--config FILE``); provenance goes in a comment header.
    """
    from cytofm import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# resolved config written by cytofm {__version__}"
    if command:
        header += f"\n# command: {command}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + "\n" + yaml.safe_dump(config_dict(cfg), sort_keys=False))
    os.replace(tmp, path)
    return path
