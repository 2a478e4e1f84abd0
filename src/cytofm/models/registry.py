"""The encoder families by spec prefix: each registers its spec syntax, what it is and where its weights come
from; ``find_weights`` looks a family's weights up (explicit path, ``weights.yaml``, ``$CYTOFM_WEIGHTS``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cytofm.models import loading
from cytofm.models.encoder import Encoder, EncoderError
from cytofm.models.weights import weights_config, weights_dir
from cytofm.utils.registry import Registry


@dataclass(frozen=True)
class EncoderFamily:
    name: str
    syntax: str
    about: str
    weights_from: str  # where to get weights, licence / gate ("" = none needed)
    factory: Callable[[str], Encoder]


ENCODER_FAMILIES: Registry[EncoderFamily] = Registry("encoder family")


def register(name: str, syntax: str, about: str, weights_from: str = ""):
    """Register ``fn(arg) -> Encoder`` as the family of specs ``name:arg``."""
    def deco(fn):
        ENCODER_FAMILIES.add(name, EncoderFamily(name, syntax, about, weights_from, fn), about)
        return fn

    return deco


def _configured_paths() -> dict[str, str]:
    p = weights_config()
    if not p.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise EncoderError(f"{p}: invalid YAML ({e})") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def find_weights(name: str, explicit: str | None) -> Path:
    """An explicit path, else ``weights.yaml`` entry ``name``, else ``$CYTOFM_WEIGHTS/name.*``."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: weights not found at {p}")
        return p
    cfg = _configured_paths()
    if name in cfg:
        p = Path(cfg[name]).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: {weights_config()} points to {p}, which does not exist")
        return p
    d = weights_dir()
    for ext in (".safetensors", ".pth", ".pt", ".bin", ""):
        p = d / f"{name}{ext}"
        if p.exists():
            return p
    family = name.split(":")[0]
    entry = ENCODER_FAMILIES.get(family) if family in ENCODER_FAMILIES else None
    how = f" Get them from {entry.weights_from}." if entry and entry.weights_from else ""
    raise EncoderError(f"{name}: no weights given and none configured.{how} Then pass the path "
                       f"(e.g. {entry.syntax if entry else name + ':/path'}), add '{name}: /path' to "
                       f"{weights_config()}, or put the file at {d}/{name}.<ext>")


def load_state(path: str | os.PathLike) -> dict:
    """A state dict or checkpoint dict (see :mod:`cytofm.models.loading`: never runs code from a pickle)."""
    try:
        return loading.load_state(path)
    except ValueError as e:
        raise EncoderError(str(e)) from None
