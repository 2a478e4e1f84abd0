"""Transductive guard: evaluation items that an encoder already saw during its (label-free) pretraining.

An encoder that saw the test images measures what it learned about those images, not transfer; a table
must say so. The check needs the encoder's pretraining record
(``cytofm.data.provenance.pretraining_record``), named by
the JSON beside its weights; encoders without one are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cytofm.data.provenance.hashing import ImageHash
from cytofm.data.provenance.pretraining_record import read_record
from cytofm.eval.leakage import SEEN_BITS, SeenImages


def pretraining_record_for(spec: str) -> Path | None:
    """The record file named under ``pretraining_record`` in the JSON beside a weights file of a resolved
    encoder spec (e.g. ``cytofm:/x/model.safetensors``); None when there is none."""
    # another readout of the same weights saw the same images
    _, _, arg = spec.split("#pool=")[0].partition(":")
    for part in [arg, *arg.split(":")]:
        p = Path(part).expanduser() if part else None
        if p is None or not p.is_file():
            continue
        meta = p.with_suffix(".json")
        if meta.is_file():
            name = json.loads(meta.read_text()).get("pretraining_record")
            if name and (meta.parent / name).is_file():
                return meta.parent / name
    return None


def seen_in_pretraining(hashes: list[ImageHash], record: list[dict], bits: int = SEEN_BITS) -> np.ndarray:
    """(N,) bool: the same file bytes (SHA-256) or a pHash within ``bits`` of a recorded image (a hash
    without a pHash, '', is compared by its bytes only)."""
    return SeenImages.from_record(record).seen(hashes, bits)


def seen_by_encoder(spec: str, hashes: list[ImageHash | None]) -> np.ndarray:
    """(N,) bool: the items the encoder of ``spec`` saw in its pretraining; all False when it has no
    record. An item without a hash (None) is not checked."""
    rec = pretraining_record_for(spec)
    if rec is None or all(h is None for h in hashes):
        return np.zeros(len(hashes), bool)
    return SeenImages.from_record(read_record(rec)).seen(hashes)


def check_encoder(spec: str, hashes: list[ImageHash]) -> tuple[float | None, str]:
    """(fraction of items seen or None when unknown, the record's file name or '')."""
    rec = pretraining_record_for(spec)
    if rec is None:
        return None, ""
    return float(seen_in_pretraining(hashes, read_record(rec)).mean()) if hashes else 0.0, rec.name
