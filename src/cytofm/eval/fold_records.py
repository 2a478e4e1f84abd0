"""Folds as the unit of resume: each fold x seed result of an evaluation is written to
``OUT/fold_results/`` the moment it finishes (its test items' probabilities and per-item outputs, e.g. MIL
attention), under a key of everything the result depends on (the settings, the store's items, labels and
features, the fold's items and groups, the cytofm version). A run stopped half-way (Ctrl-C, a scheduler's
SIGTERM) and started again with the same command reuses the finished folds and trains only the missing ones;
a changed setting or store changes the key, and the fold is trained again."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cytofm.utils.hashing import digest_of
from cytofm.utils.io import atomic_path

RECORDS = "fold_results"


def store_key(data, *settings) -> str:
    """What every fold of one evaluation depends on: ``settings``, and the items' ids, labels, groups and
    features (a re-extracted store changes them even where its manifest does not)."""
    from cytofm import __version__

    h = hashlib.sha256()
    for b in data.bags:
        h.update(np.ascontiguousarray(b).tobytes())
    groups = None if data.groups is None else [str(g) for g in data.groups]
    return digest_of(__version__, settings, h.hexdigest(), list(data.ids), data.y.tolist(),
                     list(data.classes), groups)


class FoldRecords:
    """The finished folds of one method (``name``) under ``out``; ``key``: :func:`store_key`."""

    def __init__(self, out: Path, name: str, key: str, ids: Sequence[str]):
        self.folder, self.name, self.key, self.ids = Path(out) / RECORDS, name, key, list(ids)
        self.reused = self.trained = self.replaced = 0

    def path(self, sp) -> Path:
        return self.folder / f"{self.name}_seed{sp.seed}_fold{sp.fold}.npz"

    def fold_key(self, sp) -> str:
        groups = None if sp.groups is None else [str(g) for g in sp.groups[sp.train]]
        return digest_of(self.key, int(sp.seed), int(sp.fold), [self.ids[i] for i in sp.test],
                         [self.ids[i] for i in sp.train], groups)

    def run(self, sp, compute: Callable[[], tuple], needs: Sequence[Path] = ()) -> tuple:
        """``compute()`` -> (probabilities of ``sp.test``, per-item arrays or None), or the same read back
        from an earlier run of this fold with the same key whose ``needs`` (its saved model) are there."""
        key = self.fold_key(sp)
        got = self._load(self.path(sp), key, len(sp.test))
        if got is not None and all(Path(p).is_file() for p in needs):
            self.reused += 1
            return got
        # a record of other settings goes before training: a stop before the new record is written must not
        # leave the old record beside a model file of the new settings
        self.path(sp).unlink(missing_ok=True)
        proba, extra = compute()
        self._save(self.path(sp), key, proba, extra)
        self.trained += 1
        return proba, extra

    def _load(self, path: Path, key: str, n_test: int):
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) != key:
                    self.replaced += 1
                    return None
                proba = f["proba"]
                extra = np.split(f["extra"], np.cumsum(f["lengths"])[:-1]) if "lengths" in f.files else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        return (proba, extra) if len(proba) == n_test else None

    def _save(self, path: Path, key: str, proba: np.ndarray, extra) -> None:
        arrays = {"key": np.array(key), "proba": np.asarray(proba)}
        if extra is not None:
            arrays["lengths"] = np.array([len(a) for a in extra], dtype=np.int64)
            flat = [np.asarray(a).reshape(-1) for a in extra]
            arrays["extra"] = np.concatenate(flat) if flat else np.zeros(0)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def note(self, log) -> None:
        """Say what was reused (nothing when everything was trained afresh)."""
        if log is None:
            return
        if self.reused:
            log(f"{self.name}: {self.reused} of {self.reused + self.trained} fold x seed results reused from "
                f"an earlier run of the same settings on the same store ({self.folder}); "
                f"{self.trained} trained")
        if self.replaced:
            log(f"{self.name}: {self.replaced} fold result(s) of other settings or another store replaced")


def finished(marker: Path, key: str, needs: Sequence[Path]) -> bool:
    """Whether one unit of work outside the folds (a refit model) was finished with ``key``; a marker of
    another key is removed (see :meth:`FoldRecords.run`)."""
    try:
        if marker.read_text() == key and all(Path(p).is_file() for p in needs):
            return True
    except OSError:
        pass
    marker.unlink(missing_ok=True)
    return False


def mark_finished(marker: Path, key: str) -> None:
    with atomic_path(marker) as tmp:
        tmp.write_text(key)
