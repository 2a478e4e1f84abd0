"""The encoder zoo: ``create_encoder("uni:/path/to/pytorch_model.bin")`` and friends.

Every entry loads from local weights (explicit path, then ``weights.yaml``, then ``$CYTOFM_WEIGHTS``);
a hub download happens only when ``CYTOFM_ALLOW_DOWNLOAD=1`` is set and the machine is online. Missing
weights produce a message saying where to get them and under which licence or access gate. The families
live in ``cytofm.models.families`` (one module per provider) and are listed in ``cytofm.models.registry``,
whose order is the order of ``cytofm doctor``'s list; a family's module is imported when a spec names it.
"""

from __future__ import annotations

import difflib

from cytofm.models.encoder import Encoder, EncoderError, with_pool
from cytofm.models.hub import allow_download
from cytofm.models.readouts import READOUTS
from cytofm.models.registry import ENCODER_FAMILIES
from cytofm.models.weights import find_weights

__all__ = ["ENCODER_FAMILIES", "Encoder", "EncoderError", "create_encoder", "usable_encoders"]


def create_encoder(spec: str) -> Encoder:
    """Build an encoder from a spec such as ``random:vit_small_patch16_224`` or ``uni:/w/uni.bin``; a
    ``#pool=<readout>`` suffix picks the ViT readout (``cytofm#pool=cls+mean``), a name of ``READOUTS``, as
    ``with_pool`` names it."""
    spec, _, pool = spec.partition("#pool=")
    if pool:
        if pool not in READOUTS:
            raise EncoderError(f"unknown readout '#pool={pool}'; valid: {', '.join(READOUTS.names())}")
        try:
            return with_pool(create_encoder(spec), pool)
        except ValueError as e:
            raise EncoderError(str(e)) from None
    name, _, arg = spec.partition(":")
    if name not in ENCODER_FAMILIES:
        close = difflib.get_close_matches(name, list(ENCODER_FAMILIES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise EncoderError(f"unknown encoder '{name}'{hint}; valid: "
                           + ", ".join(e.syntax for e in ENCODER_FAMILIES.entries()))
    return ENCODER_FAMILIES.get(name)(arg)


def usable_encoders() -> list[tuple[str, str]]:
    """(spec syntax, status) for ``cytofm doctor``."""
    rows = []
    for e in ENCODER_FAMILIES.entries():
        if e.name == "timm":
            status = "usable with a local weights path"
        elif e.name in ("hf-hub", "local-dir"):
            status = ("usable" if e.name == "local-dir" or allow_download()
                      else "local cache only (CYTOFM_ALLOW_DOWNLOAD=1 to fetch)")
        elif not e.weights_from:
            status = "usable"
        else:
            try:
                find_weights(e.name if e.name != "dinobloom" else "dinobloom-s", None)
                status = "weights found"
            except EncoderError:
                status = f"needs weights: {e.weights_from}"
        rows.append((e.syntax, status))
    return rows
