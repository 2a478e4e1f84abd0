"""PIL's Gaussian blur with a radius per view, for a whole batch of views on the training device: the
same three box passes as Pillow (so the device views match the PIL path's), as two batched products with
banded matrices. Written here because torchvision's ``gaussian_blur`` samples a true Gaussian, with one
radius per call."""

from __future__ import annotations

import torch

from cytofm.utils.distributed import pick_dtype


def box_radius(sigma):
    """Integer part of the box radius of PIL's three-pass blur for ``sigma`` (tensor or number)."""
    s2 = sigma ** 2 / 3
    return ((12 * s2 + 1) ** 0.5 - 1) // 2


_BLUR_BASIS: dict[tuple, torch.Tensor] = {}


def _blur_basis(size: int, lo_max: int, dev: torch.device, dt: torch.dtype) -> torch.Tensor:
    """(lo_max + 1, 4, size, size): for each integer box radius ``lo``, the matrices ``M_p`` with
    ``(B + a E)^3 = sum_p a^p M_p``, where ``B`` sums the taps within ``lo`` and ``E`` the two at ``lo + 1``
    (edge pixels repeated). Made once per size on the host in float64, then kept on the device."""
    key = (size, lo_max, str(dev), dt)
    if key not in _BLUR_BASIS:
        i = torch.arange(size)
        out = torch.zeros(lo_max + 1, 4, size, size, dtype=torch.float64)
        for lo in range(lo_max + 1):
            B = torch.zeros(size, size, dtype=torch.float64)
            E = torch.zeros(size, size, dtype=torch.float64)
            for d in range(-lo - 1, lo + 2):
                M = E if abs(d) == lo + 1 else B
                M.index_put_((i, (i + d).clamp(0, size - 1)), torch.ones(size, dtype=torch.float64),
                             accumulate=True)
            out[lo, 0] = B @ B @ B
            out[lo, 1] = E @ B @ B + B @ E @ B + B @ B @ E
            out[lo, 2] = E @ E @ B + E @ B @ E + B @ E @ E
            out[lo, 3] = E @ E @ E
        _BLUR_BASIS[key] = out.to(dev, dt)
    return _BLUR_BASIS[key]


def blur_matrix(sigma: torch.Tensor, size: int, sigma_max: float) -> torch.Tensor:
    """(n, size, size) matrices that blur a row the way PIL's ``GaussianBlur(radius=sigma)`` does: three
    passes of a box blur whose fractional radius gives variance sigma^2 (Gwosdek et al. 2011, as Pillow),
    edge pixels repeated. Three box passes are not a Gaussian at small sigma (they blur more), so the
    matrices copy them rather than sample a Gaussian. One pass is ``K = (B + a E) / (2 lo + 1 + 2 a)``, so
    ``K^3`` is a cubic in the fractional part ``a`` over matrices that depend only on the integer radius
    ``lo``: they are made once (:func:`_blur_basis`, up to the radius of ``sigma_max``, a bound known on the
    host) and each view's matrix is four scaled sums instead of two matrix products."""
    dt = sigma.dtype
    s2 = sigma.double() ** 2 / 3
    L = torch.sqrt(12 * s2 + 1)
    lo = torch.floor((L - 1) / 2)  # integer part of the box radius
    a = (2 * lo + 1) * (lo * (lo + 1) - 3 * s2) / (6 * (s2 - (lo + 1) ** 2))  # fractional part
    lo_max = int(box_radius(float(sigma_max)))
    z3 = (2 * lo + 1 + 2 * a) ** 3
    coef = torch.stack([a ** p for p in range(4)], 1) / z3.unsqueeze(1)  # (n, 4)
    basis = _blur_basis(size, lo_max, sigma.device, dt)[lo.long().clamp(0, lo_max)]  # (n, 4, size, size)
    return torch.einsum("np,npij->nij", coef.to(dt), basis)


_PRODUCT_DTYPE: dict[str, torch.dtype] = {}


def blur_product_dtype(dev: torch.device) -> torch.dtype:
    """bf16 (or fp16 on GPUs without bf16) where the hardware multiplies it natively, else fp32: on a CPU
    with bf16 units the blur's products take a seventh of their fp32 time, on one without, four times
    more (emulated)."""
    if dev.type not in _PRODUCT_DTYPE:
        _PRODUCT_DTYPE[dev.type] = pick_dtype("auto", dev) or torch.float32
    return _PRODUCT_DTYPE[dev.type]


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, sigma_max: float = 2.0,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """PIL's GaussianBlur with a radius per view (at most ``sigma_max``; larger ones are clamped to it), as
    two batched products with banded matrices (much faster than a grouped convolution on CPUs). The
    products run in ``dtype`` (default :func:`blur_product_dtype`): 8 bits of mantissa is the precision of
    the PIL path's uint8 images; the rows of the rounded matrices no longer sum to exactly 1 (off by up to
    0.2%, a brightness shift of half a level), so the result is divided by their sums in fp32."""
    n, c, h, w = x.shape
    dt = dtype or blur_product_dtype(x.device)
    sigma = sigma.clamp(max=sigma_max)
    kw = blur_matrix(sigma, w, sigma_max).to(dt)
    kh = kw if h == w else blur_matrix(sigma, h, sigma_max).to(dt)
    # along the rows: one product per view over its channels stacked (a broadcast product copies)
    y = torch.bmm(x.to(dt).reshape(n, c * h, w), kw.transpose(1, 2))
    # along the columns: the same on the transposed result
    y = torch.bmm(y.view(n, c, h, w).transpose(2, 3).reshape(n, c * w, h), kh.transpose(1, 2))
    y = y.view(n, c, w, h).transpose(2, 3).float()
    if dt != torch.float32:
        rh, rw = kh.float().sum(2), kw.float().sum(2)  # (n, h), (n, w)
        y = y / (rh.unsqueeze(2) * rw.unsqueeze(1)).unsqueeze(1)
    return y.to(x.dtype).contiguous()
