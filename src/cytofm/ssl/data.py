"""Pretraining data: prepared datasets, plain folders and manifests, mixed with sampling weights.

A batch is a pure function of (seed, iteration, rank): sources are drawn by weight, images uniformly
within a source, and every random choice of the augmentation is seeded from the same numbers. So a
resumed run sees exactly the batches an uninterrupted one would, whatever the number of loader workers.
"""

from __future__ import annotations

import copy
import io
import random
import tarfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.prepared import is_prepared_dir, load_prepared
from cytofm.data.sources.image_io import IMAGE_EXTENSIONS
from cytofm.data.sources.inputs import discover
from cytofm.data.sources.kinds import INPUT_KINDS
from cytofm.data.sources.source import open_source
from cytofm.ssl.augment import MultiCrop
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.masking import make_mask, masked_positions
from cytofm.utils.errors import InputError


@dataclass
class PatchTable:
    """The samples of one --data source: a table of files and, per sample, (file, x, y)."""

    name: str
    files: list[tuple]  # path, kind, mpp, and for a z-stack the plane policy or the plane (else None)
    geometry: list[tuple[int | None, int | None]]  # per file: level-0 size, output size (None = whole image)
    refs: np.ndarray  # (S, 3) int64: file index, x, y
    planes_of: dict[int, list[int]] = field(default_factory=dict)
    """Z-stacks under ``--z all`` with plane views: a sample's file index -> the file indices of its
    region's planes (itself first); each view is made from one of them."""

    def group(self, ref) -> list[tuple[int, int, int]]:
        """The refs a sample's views are made from: its planes, or the sample alone."""
        fi, x, y = (int(v) for v in ref)
        return [(f, x, y) for f in self.planes_of.get(fi, [fi])]

    def __len__(self) -> int:
        return len(self.refs)


def _tar_members(tars: list[Path]) -> tuple[list, list, list]:
    """Image members of webdataset shards, addressed by (shard, byte offset, size) for direct reads."""
    files, geometry, refs = [], [], []
    for i, t in enumerate(tars):
        try:
            with tarfile.open(t) as tf:
                members = [m for m in tf.getmembers()
                           if m.isfile() and Path(m.name).suffix.lower() in IMAGE_EXTENSIONS]
        except (tarfile.TarError, OSError) as e:
            raise InputError(f"{t}: not a readable tar shard ({e})") from None
        files.append((str(t), "tar", None, None))
        geometry.append((None, None))
        refs += [(i, m.offset_data, m.size) for m in members]
    return files, geometry, refs


def load_table(path: str | Path, plane_views: bool = False, cells: bool = False,
               cell_crop_um: float | None = None) -> PatchTable:
    """A prepared dataset (every kept patch; its webdataset shards when materialised), a folder or tar
    shards, or a manifest / file (every image whole). ``plane_views``: the planes of a region of a z-stack
    prepared with ``--z all`` are one sample (``PatchTable.planes_of``), else each plane is its own.
    ``cells``: a folder prepared with ``--cells`` gives one sample per detected cell (its square)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or folder")
    if cells:
        return _cell_table(p, cell_crop_um)
    files, geometry, refs = [], [], []
    tars = sorted(p.glob("*.tar")) if p.is_dir() else ([p] if p.suffix == ".tar" else [])
    if is_prepared_dir(p) and (p / "shards").is_dir():
        tars = sorted((p / "shards").glob("*.tar"))
    if tars:
        files, geometry, refs = _tar_members(tars)
        if not refs:
            raise InputError(f"{path}: the tar shards hold no images")
        return PatchTable(p.name, files, geometry, np.asarray(refs, dtype=np.int64))
    planes_of: dict[int, list[int]] = {}
    if is_prepared_dir(p):
        for it in load_prepared(p):
            _prepared_item(it, files, geometry, refs, planes_of if plane_views else None)
    else:
        items, _, _ = discover([str(p)], PrepareConfig())
        for i, it in enumerate(items):
            files.append((str(it.path), it.kind, None, None))
            geometry.append((None, None))
            refs.append(np.array([[i, 0, 0]]))
    if not refs:
        raise InputError(f"{path}: no images or patches found")
    return PatchTable(p.name, files, geometry, np.concatenate(refs).astype(np.int64), planes_of)


def _prepared_item(it, files: list, geometry: list, refs: list, planes_of: dict | None) -> None:
    """A prepared item's entries: a z-stack's patches read from their recorded planes, one file entry per
    plane; under ``all`` with ``planes_of`` given, the planes of a region are one sample (its refs on the
    first plane) whose other planes are listed in ``planes_of``."""
    c, planes = it.coords(), it.planes()
    zs = [None] if planes is None else sorted(set(planes.tolist()))
    group = planes_of is not None and it.z == "all" and len(zs) > 1 and _same_regions(c, planes, zs)
    first = len(files)
    for z in zs:
        rows = slice(None) if z is None else planes == z
        files.append((str(it.path), it.kind, it.mpp, (it.z or None) if z is None else str(z)))
        geometry.append((it.size0, it.patch_size))
        if group and z != zs[0]:
            planes_of[first].append(len(files) - 1)
            continue
        refs.append(np.concatenate([np.full((len(c[rows]), 1), len(files) - 1), c[rows]], axis=1))
        if group:
            planes_of[first] = [first]


def _cell_table(p: Path, crop_um: float | None) -> PatchTable:
    """One sample per detected cell of a folder prepared with ``--cells``, each read from its plane."""
    from cytofm.data.cells.crops import cell_squares, folder_crop_um

    if not is_prepared_dir(p) or not (p / "cells").is_dir():
        raise InputError(f"{p}: data.cells is on for it, but it is not a folder prepared with "
                         "`cytofm prepare --cells` (cells/<id>.h5)")
    crop_um, _ = folder_crop_um(p, crop_um)
    files, geometry, refs = [], [], []
    for it in load_prepared(p):
        h5 = p / "cells" / f"{it.id}.h5"
        sq = cell_squares(h5, it.mpp, crop_um) if h5.is_file() else None
        if sq is None:  # prepare said why in skipped.csv / cells.csv
            continue
        for z in [None] if sq.plane is None else sorted(set(sq.plane.tolist())):
            rows = slice(None) if z is None else sq.plane == z
            files.append((str(it.path), it.kind, it.mpp, (it.z or None) if z is None else str(z)))
            geometry.append((sq.size0, None))
            c = sq.coords[rows]
            refs.append(np.concatenate([np.full((len(c), 1), len(files) - 1), c], axis=1))
    if not refs:
        raise InputError(f"{p}: data.cells is on for it, but its cells/ holds no detected cell")
    return PatchTable(f"{p.name} (cells)", files, geometry, np.concatenate(refs).astype(np.int64))


def _same_regions(coords: np.ndarray, planes: np.ndarray, zs: list) -> bool:
    """Whether every plane holds the same patches in the same order (as ``--z all`` writes them)."""
    first = coords[planes == zs[0]]
    return all(np.array_equal(coords[planes == z], first) for z in zs[1:])


class PretrainingBatches(torch.utils.data.Dataset):
    """``dataset[iteration]`` is the whole batch of that iteration for this rank."""

    def __init__(self, tables: list[PatchTable], cfg: PretrainConfig, rank: int = 0, patch_size: int = 16):
        self.tables = tables
        self.cfg = cfg
        self.rank = rank
        self.patch_size = patch_size
        w = cfg.data.weights or [float(len(t)) for t in tables]
        if len(w) != len(tables):
            raise InputError(f"data.weights has {len(w)} values for {len(tables)} --data sources")
        w = np.asarray(w, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise InputError("data.weights must be non-negative and not all zero")
        self.weights = w / w.sum()
        self.augment = MultiCrop(cfg.crops)
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return self.cfg.train.iterations

    def fork(self) -> PretrainingBatches:
        """The same batches with their own open sources (one per thread that reads samples)."""
        other = copy.copy(self)
        other._cache = OrderedDict()
        return other

    def close(self) -> None:
        while self._cache:
            self._cache.popitem()[1].close()

    def sample_image(self, table: PatchTable, ref: np.ndarray) -> Image.Image:
        fi, x, y = (int(v) for v in ref)
        key = (id(table), fi)
        src = self._cache.get(key)
        kind = INPUT_KINDS.get(table.files[fi][1])
        if kind.members:  # (x, y) = (byte offset, size) of the member
            if src is None:
                src = self._cache[key] = kind.open(table.files[fi][0])
            return Image.open(io.BytesIO(src.read(x, y))).convert("RGB")
        if src is None:
            path, kind, mpp, z = table.files[fi]
            src = open_source(path, kind, mpp, z)
            self._cache[key] = src
            while len(self._cache) > max(self.cfg.data.cache_sources, 1):
                self._cache.popitem(last=False)[1].close()
        else:
            self._cache.move_to_end(key)
        size0, out = table.geometry[fi]
        if size0 is None:
            arr = src.read(0, 0, (src.width, src.height))
        else:
            arr = src.read(x, y, size0, out)
        return Image.fromarray(arr)

    def sample_size(self, table: PatchTable, ref: np.ndarray) -> tuple[int, int]:
        """(width, height) of a sample as :meth:`_image` returns it, read from headers where possible."""
        fi, x, y = (int(v) for v in ref)
        path, name = table.files[fi][:2]
        kind = INPUT_KINDS.get(name)
        size0, out = table.geometry[fi]
        if kind.members:
            return kind.member_size(path, x, y)
        if size0 is not None:
            o = out or size0
            return (o, o) if isinstance(o, int) else tuple(o)
        return kind.header_size(path) or self.sample_image(table, ref).size

    def sample_plan(self, iteration: int) -> list[tuple[int, int, int]]:
        """(table, row, seed) for each image of the batch."""
        rng = np.random.default_rng([self.cfg.train.seed, iteration, self.rank])
        b = self.cfg.train.batch_size
        which = rng.choice(len(self.tables), size=b, p=self.weights)
        rows = [int(rng.integers(len(self.tables[t]))) for t in which]
        seeds = rng.integers(0, 2**62, size=b)
        return [(int(t), r, int(s)) for t, r, s in zip(which, rows, seeds, strict=True)]

    def __getitem__(self, iteration: int) -> dict:
        views_per_image, masks = [], []
        g = self.cfg.crops.global_size // self.patch_size
        for t, r, seed in self.sample_plan(iteration):
            table = self.tables[t]
            img = [self.sample_image(table, ref) for ref in table.group(table.refs[r])]
            rng = random.Random(seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                views = self.augment(img, rng)
            views_per_image.append(views)
            masks.append(np.stack([make_mask(self.cfg.mask, g, g, rng) for _ in range(2)]))
        n_views = len(views_per_image[0])
        crops = [torch.stack([v[i] for v in views_per_image]) for i in range(n_views)]
        m = torch.from_numpy(np.stack(masks, axis=1))  # (2, B, g, g)
        return {"crops": crops, "masks": m, "mask_index": masked_positions(m), "iteration": iteration}
