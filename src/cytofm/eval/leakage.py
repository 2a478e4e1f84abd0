"""Whether an item's image was seen before: the same file bytes (SHA-256), or a perceptual hash within a few
bits of a seen image's (a re-encoded copy). One matcher for every record of seen images: the items a saved
model was trained on (``cytofm predict``) and the images an encoder was pretrained on (the pretraining
guard), so that both call the same thing a copy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cytofm.data.provenance.hashing import ImageHash, hamming, phash_bits

SEEN_BITS = 4
"""pHash distance at which an item counts as seen although its file differs (a re-encoded copy moves a
few bits; a different cell of a shared set moves 14 or more, docs/benchmarks/duplicates.md)."""
CHUNK = 512
"""Items compared at once (the distance matrix of a large input against a large record stays small)."""


@dataclass(frozen=True)
class SeenImages:
    """A record of seen images: their SHA-256s and their pHashes (16 hex digits each)."""

    shas: frozenset[str]
    phashes: tuple[str, ...]

    @classmethod
    def from_record(cls, rows: Iterable[dict]) -> SeenImages:
        """An encoder's pretraining record (``cytofm.data.provenance.pretraining_record``), every row."""
        rows = list(rows)
        return cls(frozenset(r["sha256"] for r in rows), tuple(r["phash"] for r in rows))

    @classmethod
    def from_hashes(cls, shas: Iterable[str], phashes: Iterable[str]) -> SeenImages:
        """Hashes of which some may be unknown (''): those are left out."""
        return cls(frozenset(s for s in shas if s), tuple(p for p in phashes if p))

    def seen(self, hashes: list[ImageHash | None], bits: int = SEEN_BITS) -> np.ndarray:
        """(N,) bool: the same bytes as a seen image, or a pHash within ``bits`` of one. An item without a
        hash (None) is not seen; one without a pHash ('') is compared by its bytes only."""
        seen = np.array([h is not None and h.sha256 in self.shas for h in hashes], bool)
        with_ph = np.array([k for k, h in enumerate(hashes) if h is not None and h.phash], np.int64)
        if len(with_ph) and self.phashes:
            a, b = phash_bits([hashes[k].phash for k in with_ph]), phash_bits(list(self.phashes))
            for s in range(0, len(a), CHUNK):
                seen[with_ph[s:s + CHUNK]] |= (hamming(a[s:s + CHUNK], b) <= bits).any(1)
        return seen
