"""The encoder shipped inside the package (issue #7); absent until it has been trained and bundled."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_weights() -> Path:
    from cytofm.models.zoo import EncoderError

    d = Path(str(resources.files("cytofm").joinpath("weights")))
    files = sorted(d.glob("*.safetensors")) if d.is_dir() else []
    if not files:
        raise EncoderError("cytofm: no encoder is shipped with this version yet; pass an export or run, "
                           "e.g. --encoder cytofm:runs/x/model.safetensors")
    return files[0]
