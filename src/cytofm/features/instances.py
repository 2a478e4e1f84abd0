"""The instances of the items to embed as a dataset: each read from its source (a few kept open, at most
one whole-image budget of decoded pixels held) and preprocessed for the encoder."""

from __future__ import annotations

from collections import OrderedDict

import torch

from cytofm.data.prepare.config import TilingConfig
from cytofm.data.prepare.tiles import size_refusal
from cytofm.data.provenance.hashing import hash_rgb
from cytofm.data.sources.image_io import BUDGET_PIXELS, ImageReadError
from cytofm.data.sources.source import open_source
from cytofm.features.items import ExtractItem
from cytofm.models.encoder import Encoder

# a whole image above the memory budget is read downsampled to this side (the encoder resizes it further)
WHOLE_MAX_SIDE = 4096
MIN_SIDE = TilingConfig().min_side
"""A whole image with a side below this is refused as ``prepare`` refuses it (one rule, one message)."""


class Instances(torch.utils.data.Dataset):
    def __init__(self, items: list[ExtractItem], encoder: Encoder, cache: int = 8):
        self.items = items
        self.index = [(i, j) for i, it in enumerate(items) for j in range(len(it.coords))]
        self.encoder = encoder
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache

    def __len__(self) -> int:
        return len(self.index)

    def _source(self, it: ExtractItem):
        src = self.cache.get(it.id)
        if src is None:
            src = open_source(it.path, it.kind, it.mpp, it.z or None)
            self.cache[it.id] = src
            # at most `cache` sources open, and at most one whole-image budget of decoded pixels held
            while len(self.cache) > self.cache_size or (len(self.cache) > 1 and self._held() > BUDGET_PIXELS):
                self.cache.popitem(last=False)[1].close()
        return src

    def _held(self) -> int:
        return sum(s.width * s.height for s in self.cache.values() if getattr(s, "array", None) is not None)

    @staticmethod
    def _whole(src, it: ExtractItem, z):
        """The whole image; with ``size0`` (``--mode image`` at one physical scale,
        :func:`cytofm.features.items.common_scale`) the square of that many level-0 pixels centred on it,
        white glass where the image is smaller."""
        w, h = src.width, src.height
        small = size_refusal(w, h, MIN_SIDE)
        if small:
            raise ImageReadError(small)
        if it.size0:
            s0 = it.size0
            return src.read((w - s0) // 2, (h - s0) // 2, s0, WHOLE_MAX_SIDE if s0 > WHOLE_MAX_SIDE else None,
                            z=z)
        # not held in memory
        s = min(1.0, WHOLE_MAX_SIDE / max(w, h)) if w * h > BUDGET_PIXELS else 1.0
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return src.read(0, 0, (w, h), size, z=z)

    def __getitem__(self, k: int):
        i, j = self.index[k]
        it = self.items[i]
        z = None if it.planes is None else int(it.planes[j])  # a z-stack instance's recorded plane
        try:
            src = self._source(it)
            if it.whole:
                rgb = self._whole(src, it, z)
            else:
                x, y = it.coords[j]
                rgb = src.read(int(x), int(y), it.size0, it.out_size, z=z)
            return self.encoder.preprocess(rgb), i, j, "", source_phash(src) if j == 0 else ""
        except ImageReadError as e:
            return torch.zeros(3, self.encoder.input_size, self.encoder.input_size), i, j, str(e), ""


def source_phash(src) -> str:
    """The pHash of an image held whole, from the pixels already decoded (slides: ''), stored so that a
    later leakage check (``predict``, the pretraining guard) need not decode the source again."""
    array = getattr(src, "array", None)
    return hash_rgb(array)[0] if array is not None else ""


def collate(b):
    return (torch.stack([x[0] for x in b]), [x[1] for x in b], [x[2] for x in b], [x[3] for x in b],
            [x[4] for x in b])
