"""Content hashes of images: SHA-256 of the file bytes (exact copies) and a perceptual hash of the decoded
pixels (re-encoded, rescaled or slightly shifted-in-brightness copies).

The perceptual hash is imagehash's pHash (64 bits: DCT of a 32x32 grey thumbnail, low 8x8 coefficients
against their median), the field's standard, so its distances mean what they mean elsewhere. A 32x32 RGB
thumbnail is kept beside it: low-contrast single cells can sit 14 bits apart while their pixels differ by
under 2% (Herlev), and the thumbnail's mean absolute difference sees that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from cytofm.data.sources.image_io import read_rgb
from cytofm.utils.hashing import sha256_file

THUMB = 32


@dataclass
class ImageHash:
    sha256: str
    phash: str
    """16 hex digits (64 bits)."""
    thumb: np.ndarray
    """(THUMB*THUMB*3,) float32 RGB thumbnail (box-filtered), 0..255."""


def hash_rgb(rgb: np.ndarray) -> tuple[str, np.ndarray]:
    """pHash (hex) and thumbnail of an (H, W, 3) uint8 image."""
    im = Image.fromarray(rgb)
    thumb = np.asarray(im.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32).reshape(-1)
    return str(imagehash.phash(im)), thumb


def hash_image(path: str | os.PathLike) -> ImageHash:
    rgb, _ = read_rgb(path)
    ph, thumb = hash_rgb(rgb)
    return ImageHash(sha256_file(path), ph, thumb)


def phash_bits(hexes: list[str]) -> np.ndarray:
    """(N, 64) bool bit matrix of hex pHashes."""
    return np.array([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hexes],
                    dtype=bool).reshape(len(hexes), 64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) bit distances between two bit matrices (N, 64) and (M, 64)."""
    a8, b8 = a.astype(np.uint8), b.astype(np.uint8)
    return (a8 @ (1 - b8).T + (1 - a8) @ b8.T).astype(np.int32)
