"""The pretraining pool decoded once into uint8, in memory or memory-mapped when over the memory budget:
what the device views crop from. Its size is said before anything is decoded."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class CacheTooLarge(ValueError):
    """The decoded pool would not fit the memory budget, and no folder was given for a memory map."""


@dataclass
class ViewCache:
    """Every sample of a pool as uint8 RGB, flat: sample ``i`` is ``data[offsets[i]:]`` of shape
    ``shapes[i]``."""

    data: torch.Tensor  # (total,) uint8, in memory or over a np.memmap
    offsets: np.ndarray  # (S,) int64
    shapes: np.ndarray  # (S, 2) int64: height, width

    def __len__(self) -> int:
        return len(self.offsets)

    def batch(self, idx: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) uint8 padded to the largest sample of the batch, and the (B, 2) true sizes."""
        shapes = self.shapes[np.asarray(idx)]
        H, W = int(shapes[:, 0].max()), int(shapes[:, 1].max())
        out = torch.zeros(len(idx), 3, H, W, dtype=torch.uint8)
        for j, i in enumerate(idx):
            h, w = (int(v) for v in self.shapes[i])
            o = int(self.offsets[i])
            out[j, :, :h, :w] = self.data[o:o + 3 * h * w].view(3, h, w)
            # edge pixels repeated into the padding: bilinear samples at the border see no black
            out[j, :, :h, w:] = out[j, :, :h, w - 1:w]
            out[j, :, h:, :] = out[j, :, h - 1:h, :]
        return out, torch.from_numpy(shapes.copy())

    @staticmethod
    def nbytes_for(shapes: np.ndarray) -> int:
        return int((3 * shapes[:, 0] * shapes[:, 1]).sum())


def fit_side(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def memory_budget() -> int:
    """Half of the memory the OS says is available now (bytes)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def build_cache(size_of, image_of, n: int, max_side: int, spill_dir: str | os.PathLike | None = None,
                budget: int | None = None, log=print, workers: int = 1) -> ViewCache:
    """Decode ``n`` samples once: ``size_of(i)`` gives sample ``i``'s (width, height) without decoding it,
    ``image_of(i)`` the PIL image. Samples larger than ``max_side`` are reduced (aspect kept); the rest stay
    at their own size. The size of the cache is said before anything is decoded; over ``budget`` bytes it
    becomes a memory map in ``spill_dir`` (refused without one). ``workers`` > 1: samples decoded by that
    many threads (decoders release the GIL; ``image_of`` must then be safe to call from several threads)."""
    budget = memory_budget() if budget is None else budget
    sizes = np.zeros((n, 2), np.int64)
    for i in range(n):
        w, h = fit_side(*size_of(i), max_side)
        sizes[i] = (h, w)
    total = ViewCache.nbytes_for(sizes)
    spill = total > budget
    where = "in memory"
    if spill:
        if spill_dir is None:
            raise CacheTooLarge(f"the decoded pretraining pool needs {total / 2**30:.1f} GiB, more than the "
                                f"{budget / 2**30:.1f} GiB budget, and no folder was given for a memory map")
        path = Path(spill_dir) / "view_cache.u8"
        path.parent.mkdir(parents=True, exist_ok=True)
        where = f"memory-mapped at {path}"
        arr = np.memmap(path, dtype=np.uint8, mode="w+", shape=(max(total, 1),))
        data = torch.from_numpy(arr)
    else:
        data = torch.empty(max(total, 1), dtype=torch.uint8)
    log(f"view cache: {n} samples decoded once, {total / 2**20:.0f} MiB "
        f"({where}; budget {budget / 2**30:.1f} GiB)")
    # each sample's slot from its header size, so samples decode in any order (in parallel)
    offsets = np.zeros(n, np.int64)
    offsets[1:] = np.cumsum(3 * sizes[:, 0] * sizes[:, 1])[:-1]

    def decode(i: int) -> None:
        h, w = (int(v) for v in sizes[i])
        im = image_of(i)
        w2, h2 = fit_side(*im.size, max_side)
        if (w2, h2) != (w, h) and w2 * h2 <= w * h:  # the header told another size (e.g. an EXIF rotation)
            w, h = w2, h2
            sizes[i] = (h, w)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        o = int(offsets[i])
        data[o:o + 3 * h * w] = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).reshape(-1)

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(decode, range(n)))
    else:
        for i in range(n):
            decode(i)
    if spill:
        arr.flush()
    return ViewCache(data, offsets, sizes)
