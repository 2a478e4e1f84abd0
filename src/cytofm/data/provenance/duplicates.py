"""Near-duplicate images, found by perceptual hash and grouped so a pair never straddles a split.

Rule (measured on the shared sets, ``docs/benchmarks/duplicates.md``): two images are near-duplicates when
their 64-bit pHashes differ in at most ``PHASH_BITS`` bits, or in at most ``CANDIDATE_BITS`` bits while their
32x32 RGB thumbnails differ by at most ``THUMB_MAD`` (mean absolute difference, 0..255). The first catches
re-encoded and brightness-shifted copies; the second, low-contrast cells that pHash spreads further apart.

Why these numbers: on BCCD the pHash alone separates cleanly (fields 00037/00038, the same lymphocyte, are
4 bits apart; the next closest pair is at 14). On Herlev's 40x40 cells it does not: of the 7 pairs whose
pixels differ by under 6/255 on average, 5 are within 10 bits and 2 at 14, while unrelated look-alike cells
already sit at 8-10 bits. The thumbnail test finds all 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytofm.data.provenance.hashing import ImageHash, hamming, phash_bits

PHASH_BITS = 10
CANDIDATE_BITS = 16
THUMB_MAD = 6.0


@dataclass
class Pair:
    i: int
    j: int
    bits: int
    mad: float


def near_duplicate_pairs(hashes: list[ImageHash], phash_bits_max: int = PHASH_BITS,
                         candidate_bits: int = CANDIDATE_BITS, thumb_mad: float = THUMB_MAD) -> list[Pair]:
    """Pairs (i < j) under the rule above (identical files have identical pHashes, distance 0)."""
    if len(hashes) < 2:
        return []
    bits = phash_bits([h.phash for h in hashes])
    d = hamming(bits, bits)
    ii, jj = np.nonzero(np.triu(d <= max(phash_bits_max, candidate_bits), 1))
    out = []
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        mad = float(np.abs(hashes[i].thumb - hashes[j].thumb).mean())
        if d[i, j] <= phash_bits_max or mad <= thumb_mad:
            out.append(Pair(i, j, int(d[i, j]), mad))
    return sorted(out, key=lambda p: (p.i, p.j))


def merge_groups(n: int, pairs: list[Pair], groups: np.ndarray | None = None) -> np.ndarray:
    """Group labels (N,) joining items that share a group or are linked by a pair (union-find); an item
    alone keeps a group of its own."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    if groups is not None:
        first: dict = {}
        for k, g in enumerate(groups):
            union(first.setdefault(g, k), k)
    for p in pairs:
        union(p.i, p.j)
    return np.array([find(k) for k in range(n)])
