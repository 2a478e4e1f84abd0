"""File and perceptual hashes against known values and the imagehash library's own distance."""

import imagehash
import numpy as np
from PIL import Image

from cytofm.data.provenance.hashing import hamming, hash_image, phash_bits, sha256_file


def test_sha256_known_value(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_file(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_phash_distance_matches_imagehash(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(5)]
    for k, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"{k}.png")
    hs = [hash_image(tmp_path / f"{k}.png") for k in range(5)]
    d = hamming(phash_bits([h.phash for h in hs]), phash_bits([h.phash for h in hs]))
    ref = [[imagehash.phash(Image.fromarray(a)) - imagehash.phash(Image.fromarray(b)) for b in imgs]
           for a in imgs]
    assert d.tolist() == ref and d[0, 0] == 0 and d[0, 1] > 10
    assert hs[0].thumb.shape == (32 * 32 * 3,)
