"""Where model weights are looked for (no run-time downloads unless a user asks for one).

Order: an explicit path in the encoder spec; a user config of local paths
(``$CYTOFM_CONFIG_DIR/weights.yaml``, default ``~/.config/cytofm/weights.yaml``, mapping names to files);
the folder ``$CYTOFM_WEIGHTS`` (default ``~/.cache/cytofm/weights``).
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    return Path(os.environ.get("CYTOFM_CONFIG_DIR", Path.home() / ".config" / "cytofm")).expanduser()


def weights_dir() -> Path:
    return Path(os.environ.get("CYTOFM_WEIGHTS", Path.home() / ".cache" / "cytofm" / "weights")).expanduser()


def weights_config() -> Path:
    return config_dir() / "weights.yaml"


def search_paths() -> list[tuple[str, Path]]:
    return [("weights config", weights_config()), ("weights folder", weights_dir())]
