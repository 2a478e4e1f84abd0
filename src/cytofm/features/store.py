"""The feature store: one h5 per source item plus ``manifest.csv`` and ``store.json``.

Each ``features/<id>.h5`` holds ``features`` (N, D) float32 and ``coords`` (N, 2) int64 (level-0 top-left
x, y; (0, 0) for whole images), with attributes naming the encoder, a hash of its weights, the patch
size, resolution and cytofm version; ``coords`` carries the patch geometry TRIDENT and CLAM read
(:mod:`cytofm.features.formats.geometry`). ``cytofm convert`` writes the other tools' layouts.

``store.json`` records once what the features mean (encoder, weights, mode, TTA): a store holds one
encoder's features or it is refused, because a probe on a mix of two encoders' features silently
measures nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from cytofm.features.formats.geometry import COORDS_ATTRS
from cytofm.utils.errors import InputError
from cytofm.utils.io import atomic_path, read_csv, resolve_path, strict_json

STORE_FILE = "store.json"
# what makes two stores' features comparable; everything else in store.json is information
IDENTITY_KEYS = ("encoder", "weights_hash", "embed_dim", "input_size", "mode", "tta")


class StoreError(InputError):
    """A feature store that cannot be used as asked (another encoder's, or a mix of encoders)."""


def write_item(path: str | os.PathLike, features: np.ndarray, coords: np.ndarray, attrs: dict,
               planes: np.ndarray | None = None) -> None:
    """One item's features and coordinates (and, for a z-stack, ``z``: the plane each came from)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features.astype(np.float32))
            c = f.create_dataset("coords", data=coords.astype(np.int64))
            if planes is not None:
                f.create_dataset("z", data=np.asarray(planes, np.int64))
            for k, v in attrs.items():
                f.attrs[k] = v if v is not None else ""
                if k in COORDS_ATTRS:
                    c.attrs[k] = v


def read_item(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        return f["features"][:], f["coords"][:], dict(f.attrs)


def item_attrs(path: str | os.PathLike) -> dict | None:
    try:
        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except Exception:
        return None


def identity_of(attrs: dict) -> dict:
    """The comparable part of an item's or a store's attributes, as plain Python values."""
    out = {}
    for k in IDENTITY_KEYS:
        v = attrs.get(k, "")
        out[k] = v.item() if hasattr(v, "item") else v
    out["tta"] = bool(out["tta"])
    out["embed_dim"] = int(out["embed_dim"] or 0)
    out["input_size"] = int(out["input_size"] or 0)
    return out


def _describe(ident: dict) -> str:
    return (f"{ident['encoder']} (weights {str(ident['weights_hash'])[:12]}, {ident['mode']} mode"
            f"{', TTA' if ident['tta'] else ''})")


def claim_store(root: str | os.PathLike, identity: dict, extra: dict | None = None) -> None:
    """Record ``identity`` as the store's, or refuse when the folder already holds another encoder's features.

    A store written before ``store.json`` existed is judged by its items' attributes.
    """
    root = Path(root)
    want = identity_of(identity)
    have = store_identity(root)
    if have is None:
        found = Counter(json.dumps(identity_of(a), sort_keys=True) for a in _all_item_attrs(root))
        if len(found) > 1:
            raise StoreError(_mixed_message(root, found))
        have = json.loads(next(iter(found))) if found else None
    if have is not None and have != want:
        raise StoreError(f"{root} holds features of {_describe(have)}; this run would add {_describe(want)}. "
                         "Choose another --out (one store per encoder and mode) or delete the old store")
    if not (root / STORE_FILE).is_file():
        with atomic_path(root / STORE_FILE) as tmp:
            tmp.write_text(strict_json({**want, **(extra or {})}))


def extract_settings(store: str | os.PathLike) -> dict:
    """The settings extract recorded in a store's ``config.yaml`` ({} where there are none or unreadable)."""
    import yaml

    try:
        return yaml.safe_load((Path(store) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def prepared_folder(store: str | os.PathLike) -> Path | None:
    """The prepared folder a store's features were extracted from (``config.yaml``'s input as typed,
    relative to where extract ran or to the store's folder, or the one extract prepared itself into)."""
    store = Path(store)
    given = Path(str(extract_settings(store).get("input", "")))
    candidates = (given, store.parent / given) if str(given) not in ("", ".") else ()
    for d in (*candidates, store / "prepared"):
        if (d / "manifest.csv").is_file() and (d / "config.yaml").is_file():
            return d
    return None


def store_identity(root: str | os.PathLike) -> dict | None:
    p = Path(root) / STORE_FILE
    if not p.is_file():
        return None
    try:
        return identity_of(json.loads(p.read_text()))
    except (OSError, ValueError) as e:
        raise StoreError(f"{p}: unreadable store record ({e})") from None


def _all_item_attrs(root: Path):
    for h5 in sorted((root / "features").glob("*.h5")):
        a = item_attrs(h5)
        if a is not None and "weights_hash" in a:
            yield a


def _mixed_message(root: Path, found: Counter) -> str:
    parts = [f"{n} item(s) from {_describe(json.loads(k))}" for k, n in found.most_common()]
    return f"{root} mixes features of several encoders: {'; '.join(parts)}. Re-extract into a fresh --out"


def load_store(root: str | os.PathLike, check: bool = True) -> list[dict]:
    """Manifest rows of a feature store, each with absolute ``h5`` and source ``path``.

    With ``check``, every listed item must carry the store's identity (or, for stores without
    ``store.json``, all items one identity): a mixed store is refused rather than evaluated.
    """
    root = Path(root)
    m = root / "manifest.csv"
    if not m.is_file():
        raise FileNotFoundError(f"{root}: not a feature store (no manifest.csv)")
    rows = read_csv(m)
    for r in rows:
        r["h5"] = str(root / r["h5"])
        if r.get("path"):
            r["path"] = str(resolve_path(r["path"], root))
    if check:
        want = store_identity(root)
        found: Counter = Counter()
        for r in rows:
            a = item_attrs(r["h5"])
            if a is not None and "weights_hash" in a:
                found[json.dumps(identity_of(a), sort_keys=True)] += 1
        if want is not None:
            found[json.dumps(want, sort_keys=True)] += 0
        if len(found) > 1:
            raise StoreError(_mixed_message(root, found))
    return rows
