"""The encoder shipped inside the package, also in the Hugging Face hub layout.

The hub layout's ``config.json`` and ``README.md`` live in ``weights/hub/``; its ``model.safetensors`` is
the shipped weights file itself, linked (or copied) into a folder on demand by :func:`shipped_hub_dir`,
so the 43 MB of weights are stored once.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SHIPPED_NAME = "cytofm_vit_small_patch16"


def _weights_folder() -> Path:
    return Path(str(resources.files("cytofm").joinpath("weights")))


def shipped_weights() -> Path:
    from cytofm.models.encoder import EncoderError

    d = _weights_folder()
    files = sorted(d.glob("*.safetensors")) if d.is_dir() else []
    if not files:
        raise EncoderError("cytofm: no encoder is shipped with this version yet; pass an export or run, "
                           "e.g. --encoder cytofm:runs/x/model.safetensors")
    return files[0]


def shipped_hub_files() -> Path:
    """The packaged ``config.json`` + ``README.md`` of the shipped encoder's hub layout."""
    return _weights_folder() / "hub"


def shipped_hub_dir(dest: str | os.PathLike | None = None) -> Path:
    """A hub-layout folder of the shipped encoder (``timm.create_model("local-dir:DIR", pretrained=True)``).

    Default place: ``$CYTOFM_WEIGHTS/cytofm_vit_small_patch16``; the weights are hard-linked where the file
    system allows it.
    """
    import shutil

    from cytofm.models.hub import CARD, CONFIG, WEIGHTS, link_or_copy
    from cytofm.models.weights import weights_dir

    out = Path(dest) if dest is not None else weights_dir() / SHIPPED_NAME
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, CARD):
        shutil.copyfile(shipped_hub_files() / name, out / name)
    src = shipped_weights()
    target = out / WEIGHTS
    if not (target.is_file() and target.stat().st_size == src.stat().st_size
            and target.stat().st_mtime >= src.stat().st_mtime):
        link_or_copy(src, target)
    return out
