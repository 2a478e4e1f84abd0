"""Stain channels of brightfield cytology: optical density split into a nuclear stain and the rest by colour
deconvolution (Ruifrok & Johnston 2001), with fixed vectors for Romanowsky/Giemsa and Papanicolaou
preparations or vectors estimated per image (Macenko et al. 2009).

cytofm had only the H&E/HED vectors (scikit-image's ``rgb2hed``). The fixed vectors below are unit optical
density directions (absorbance in R, G, B) of the dyes as they appear on smears: the azure/methylene-blue
complex of Romanowsky stains and haematoxylin both absorb red and green (purple-blue nuclei); eosin (red
cells, granules) absorbs green; Pap's counterstains (eosin azure and orange G) absorb green and blue.
Macenko's estimate is a dozen lines of numpy written here rather than a dependency (torchstain, staintools)
that would bring torch or an unmaintained stack into ``prepare``'s worker processes.
"""

from __future__ import annotations

import numpy as np

STAIN_VECTORS = {
    "giemsa": {"nuclear": (0.62, 0.72, 0.31), "other": (0.09, 0.92, 0.38)},
    "pap": {"nuclear": (0.65, 0.70, 0.29), "other": (0.16, 0.72, 0.68)},
}
"""Unit OD vectors (R, G, B absorbance) of the nuclear stain and of the counterstain, per preparation."""

CHANNELS = ("nuclear", "other")


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def deconvolution_matrix(nuclear, other) -> np.ndarray:
    """(3, 3) matrix M with OD = concentrations @ M; its third row completes the basis (the direction
    orthogonal to both stains, which takes what neither explains)."""
    a, b = _unit(nuclear), _unit(other)
    c = np.cross(a, b)
    return np.stack([a, b, _unit(c) if np.linalg.norm(c) > 1e-9 else np.array([0.0, 0.0, 1.0])])


def stain_concentrations(od: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(H, W, 2) amount of the nuclear stain and of the counterstain per pixel (OD units, clipped at 0)."""
    unmix = np.linalg.inv(matrix)[:, :2].astype(np.float32)  # the third (residual) channel is not kept
    conc = np.asarray(od, np.float32).reshape(-1, 3) @ unmix
    return np.maximum(conc, 0, out=conc).reshape(*od.shape[:2], 2)


def estimate_vectors(od: np.ndarray, beta: float = 0.15, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Macenko's estimate from one image's optical density: the plane of the two largest principal
    directions of the stained pixels (OD above ``beta`` in every channel), and in it the two extreme
    directions (the ``alpha`` and 100 - ``alpha`` percentiles of the angle). The one absorbing more red
    is the nuclear stain (purple-blue against pink or orange). Falls back to the Giemsa vectors when
    too few pixels are stained to estimate anything."""
    px = od.reshape(-1, 3)
    px = px[(px > beta).all(1)]
    if len(px) < 200:
        g = STAIN_VECTORS["giemsa"]
        return _unit(g["nuclear"]), _unit(g["other"])
    _, vecs = np.linalg.eigh(np.cov(px.T))
    plane = vecs[:, [2, 1]].copy()  # (3, 2): the two largest directions of the OD covariance
    plane *= np.sign(plane.sum(0, keepdims=True) + 1e-12)  # directions of positive absorbance
    proj = px @ plane
    angle = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angle, alpha), np.percentile(angle, 100 - alpha)
    v1 = _unit(plane @ np.array([np.cos(lo), np.sin(lo)]))
    v2 = _unit(plane @ np.array([np.cos(hi), np.sin(hi)]))
    v1, v2 = np.abs(v1), np.abs(v2)  # absorbance is non-negative; noise can flip a near-zero component
    return (v1, v2) if v1[0] >= v2[0] else (v2, v1)


def stain_matrix(stain: str, od: np.ndarray | None = None) -> np.ndarray:
    """The deconvolution matrix of a named preparation, or estimated from ``od`` (``stain='estimate'``)."""
    if stain == "estimate":
        if od is None:
            raise ValueError("estimating stain vectors needs the image's optical density")
        return deconvolution_matrix(*estimate_vectors(od))
    if stain not in STAIN_VECTORS:
        raise ValueError(f"unknown stain '{stain}'; known: {', '.join(STAIN_VECTORS)}, estimate")
    v = STAIN_VECTORS[stain]
    return deconvolution_matrix(v["nuclear"], v["other"])
