"""Which items of a feature store are finished: an item is reused only while its key (the encoder, the
source's content and the regions read from it) is unchanged, and each source is hashed at most once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytofm.features.items import ExtractItem
from cytofm.features.store import item_attrs
from cytofm.utils.hashing import digest_of, file_digest


def item_key(it: ExtractItem, identity: dict, digest: str) -> str:
    """What an item's features depend on: the encoder, the source's content, and the regions read from it.

    Any change (another encoder, a replaced file, another patch size, resolution or foreground
    selection after re-preparing) gives another key, so a resume re-extracts exactly the changed items.
    """
    return digest_of(sorted(identity.items()), digest, it.kind, it.whole, it.size0, it.out_size,
                     None if it.mpp is None else round(float(it.mpp), 9),
                     np.asarray(it.coords, np.int64).tobytes(),
                     *(() if it.planes is None and not it.z else
                       (it.z, b"" if it.planes is None else np.asarray(it.planes, np.int64).tobytes())))


class Resume:
    """Per-item resume decisions, with each source hashed at most once per run."""

    def __init__(self, out: Path, identity: dict):
        self.out, self.identity = out, identity
        self.digests: dict[str, tuple[str, str]] = {}
        self.unreadable: list[Path] = []

    def h5(self, it: ExtractItem) -> Path:
        return self.out / "features" / f"{it.id}.h5"

    def digest(self, it: ExtractItem, attrs: dict | None = None) -> tuple[str, str]:
        if it.id not in self.digests:
            cached = ((str(attrs.get("source_stat", "")), str(attrs.get("source_sha256", "")))
                      if attrs else None)
            self.digests[it.id] = file_digest(it.path, cached)
        return self.digests[it.id]

    def done(self, it: ExtractItem) -> bool:
        a = item_attrs(self.h5(it))
        if a is None and self.h5(it).exists():
            self.unreadable.append(self.h5(it))  # truncated or damaged: extracted again, and said so
        if a is None or "item_key" not in a:
            return False
        try:
            _, d = self.digest(it, a)
        except OSError:
            return False
        return a["item_key"] == item_key(it, self.identity, d)

    def stale_source(self, it: ExtractItem) -> str | None:
        """Why a prepared item cannot be used as prepared (its source changed since), or None."""
        if not it.prepared_digest:
            return None
        try:
            _, d = self.digest(it, item_attrs(self.h5(it)))
        except OSError as e:
            return f"cannot read source ({e.strerror or e})"
        if d != it.prepared_digest:
            return "the file changed since `cytofm prepare` (content differs); prepare it again"
        return None
