"""``cytofm predict``'s input made into the model's features: images prepared and embedded with the settings
and the encoder the model records, or a given prepared folder or feature store checked to be what the
model's features were (another tiling, encoder, weights, readout or mode is refused with the difference
named, never mixed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cytofm.eval.saved_model import ModelFolderError, SavedModel
from cytofm.features.store import IDENTITY_KEYS, STORE_FILE, store_identity

PREPARED_MODES = ("tiles", "cells")
"""Extraction modes whose instances come from a prepared folder."""


def check_store(model: SavedModel, store: Path) -> None:
    """Refuse a store whose features another encoder (weights, readout, mode, input size) produced."""
    want = {k: model.identity.get(k) for k in IDENTITY_KEYS}
    have = store_identity(store)
    if have is None:
        raise ModelFolderError(f"{store}: no {STORE_FILE}; extract the features with this cytofm version")
    diff = [f"{k}: {have.get(k)!r} in the store, {want[k]!r} in the model" for k in IDENTITY_KEYS
            if str(have.get(k)) != str(want[k])]
    spec_here = json.loads((store / STORE_FILE).read_text()).get("encoder_spec", "")
    spec_model = model.encoder_spec
    if _readout(spec_here) != _readout(spec_model):  # cls and mean readouts have the same size
        diff.append(f"readout: {_readout(spec_here)!r} in the store, {_readout(spec_model)!r} in the model")
    if diff:
        raise ModelFolderError(f"{store} holds features the model was not trained on ({'; '.join(diff)}); "
                               "give the images instead, and predict extracts them with the model's encoder")


def _readout(spec: str) -> str:
    return spec.partition("#pool=")[2] or "cls"


def embed(model: SavedModel, input: Path, out: Path, progress, log, seconds: dict,
          device: str = "auto") -> Path:
    """Prepare (tiles and cells modes) and extract ``input`` with the recorded settings and encoder into
    ``out``; ``seconds`` gets the time of each."""
    from cytofm.features.config import ExtractConfig
    from cytofm.features.extract import run_extract

    enc = _encoder(model)
    t0 = time.perf_counter()
    source = _prepared(model, input, out, progress, log)
    seconds["prepare"], t0 = time.perf_counter() - t0, time.perf_counter()
    ident, extract = model.identity, model.extract
    cfg = ExtractConfig(input=str(source), mode=ident["mode"], out=str(out / "features"),
                        tta=bool(ident["tta"]), batch_size=int(extract.get("batch_size", 64)),
                        workers=int(extract.get("workers", 1)), device=device,
                        cell_crop_um=extract.get("cell_crop_um"),
                        image_field_um=extract.get("image_field_um"), image_mpp=extract.get("image_mpp"))
    run_extract(enc, cfg, progress=progress, log=log)
    seconds["extract"] = time.perf_counter() - t0
    return out / "features"


def _encoder(model: SavedModel):
    """The recorded encoder, refused unless its weights are the ones the model's features came from."""
    from cytofm.models.zoo import create_encoder

    ident = model.identity
    if not ident.get("encoder_spec"):
        raise ModelFolderError("the model records no encoder (its features came from a store without "
                               "store.json): give a feature store of the same encoder as --input")
    enc = create_encoder(ident["encoder_spec"])
    if enc.weights_hash != ident["weights_hash"]:
        raise ModelFolderError(f"encoder {ident['encoder_spec']} here has weights {enc.weights_hash}, the "
                               f"model was trained on features of weights {ident['weights_hash']}: point the "
                               "spec to the same weights file")
    return enc


def _prepared(model: SavedModel, input: Path, out: Path, progress, log) -> Path:
    """What extraction reads: ``input`` prepared with the recorded settings into ``out/prepared`` (one
    process prepares under torchrun, the others wait for it), a prepared ``input`` checked, or ``input``."""
    import torch.distributed as dist

    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.prepared import is_prepared_dir
    from cytofm.data.prepare.run import run_prepare

    if model.identity["mode"] not in PREPARED_MODES:
        return input
    if is_prepared_dir(input):
        if model.prepare:
            check_prepared(model.prepare, input)
        return input
    if not model.prepare:
        raise ModelFolderError("the model records no prepare settings (the prepared folder its features "
                               "came from was not found when it was saved): prepare the input with them "
                               "and give the prepared folder as --input")
    pcfg = build_config(PrepareConfig, values=model.prepare)
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        run_prepare([str(input)], out / "prepared", pcfg, progress=progress, log=log)
    if distributed:
        dist.barrier()
    return out / "prepared"


def settings_differences(want: dict, got: dict, prefix: str = "") -> list[str]:
    """Each nested setting that differs, as ``key.sub: GOT there, WANT in the model``."""
    out = []
    for k in sorted(set(want) | set(got)):
        a, b = want.get(k), got.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {b!r} there, {a!r} in the model")
    return out


def check_prepared(recorded: dict, folder: Path) -> None:
    """A prepared folder given as input must have been tiled as the model's features were (patch size,
    resolution, foreground): other patches would be silently other instances. Refused with the settings
    that differ named."""
    import yaml

    try:
        here = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ModelFolderError(f"{folder}/config.yaml: cannot read the prepare settings ({e})") from None
    diff = settings_differences(recorded, {k: here.get(k) for k in recorded})
    if diff:
        raise ModelFolderError(f"{folder}: prepared with other settings than the model's features: "
                               + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else "")
                               + "; give the unprepared images (predict prepares them as recorded) or "
                                 "re-prepare with the model's settings")


def paths_as_given(input: Path, rows: list[dict]) -> dict[str, str]:
    """Each item's source path (as the store resolves it, ``out/features/../../x.png``) as the user gave
    it: a manifest's own value, a file under a given folder joined to that folder as typed, else the
    path without its ``..`` steps. predictions.csv then joins back to the user's table."""
    given: dict[str, str] = {}
    if input.suffix.lower() == ".csv" and input.is_file():
        given = _manifest_paths(input)
    base = input.resolve() if input.is_dir() else None
    out = {}
    for r in rows:
        p = r.get("path") or ""
        if not p:
            continue
        real = str(Path(p).resolve())
        if real in given:
            out[p] = given[real]
        elif base is not None and Path(real).is_relative_to(base):
            out[p] = (input / Path(real).relative_to(base)).as_posix()
        else:
            out[p] = Path(os.path.normpath(p)).as_posix()
    return out


def _manifest_paths(manifest: Path) -> dict[str, str]:
    """A manifest's path values by the file each names (resolved as prepare resolves them)."""
    from cytofm.data.sources.inputs import path_column
    from cytofm.utils.io import read_csv

    try:
        rows = read_csv(manifest)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    col = path_column(rows[0].keys()) if rows else None
    out = {}
    for r in rows if col else []:
        raw = (r.get(col) or "").strip()
        if raw:
            p = Path(raw).expanduser()
            out[str((p if p.is_absolute() else manifest.parent / p).resolve())] = raw
    return out
