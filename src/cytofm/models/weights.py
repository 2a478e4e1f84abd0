"""Where model weights are looked for (no run-time downloads unless a user asks for one).

Order: an explicit path in the encoder spec; a user config of local paths
(``$CYTOFM_CONFIG_DIR/weights.yaml``, default ``~/.config/cytofm/weights.yaml``, mapping names to files);
the folder ``$CYTOFM_WEIGHTS`` (default ``~/.cache/cytofm/weights``). A missing file is refused with where the
family's weights come from (its registry entry's ``weights_from``). Imports no torch: ``cytofm doctor``
lists these places.
"""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.models.registry import ENCODER_FAMILIES


def config_dir() -> Path:
    return Path(os.environ.get("CYTOFM_CONFIG_DIR", Path.home() / ".config" / "cytofm")).expanduser()


def weights_dir() -> Path:
    return Path(os.environ.get("CYTOFM_WEIGHTS", Path.home() / ".cache" / "cytofm" / "weights")).expanduser()


def weights_config() -> Path:
    return config_dir() / "weights.yaml"


def search_paths() -> list[tuple[str, Path]]:
    return [("weights config", weights_config()), ("weights folder", weights_dir())]


def _configured_paths() -> dict[str, str]:
    from cytofm.models.encoder import EncoderError  # here: this module must not import torch

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
    from cytofm.models.encoder import EncoderError

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
    entry = ENCODER_FAMILIES.entry(family) if family in ENCODER_FAMILIES else None
    how = f" Get them from {entry.weights_from}." if entry and entry.weights_from else ""
    raise EncoderError(f"{name}: no weights given and none configured.{how} Then pass the path "
                       f"(e.g. {entry.syntax if entry else name + ':/path'}), add '{name}: /path' to "
                       f"{weights_config()}, or put the file at {d}/{name}.<ext>")


def load_state(path: str | os.PathLike) -> dict:
    """A state dict or checkpoint dict (see :mod:`cytofm.models.loading`: never runs code from a pickle)."""
    from cytofm.models import loading
    from cytofm.models.encoder import EncoderError

    try:
        return loading.load_state(path)
    except ValueError as e:
        raise EncoderError(str(e)) from None
