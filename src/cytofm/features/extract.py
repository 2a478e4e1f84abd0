"""``cytofm extract``: frozen features for every instance of a dataset, resumable, batched, bf16."""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cytofm import __version__
from cytofm.data.image_io import ImageReadError
from cytofm.data.inputs import InputError, Skip, discover
from cytofm.data.prepare_config import PrepareConfig
from cytofm.data.prepared import is_prepared_dir, load_prepared
from cytofm.data.source import open_source
from cytofm.features.formats.geometry import extract_attrs
from cytofm.features.store import item_attrs, write_item
from cytofm.models.encoder import Encoder
from cytofm.utils.distributed import pick_device, pick_dtype
from cytofm.utils.io import write_csv


@dataclass
class ExtractItem:
    id: str
    path: Path
    kind: str
    whole: bool
    coords: np.ndarray
    size0: int | None
    out_size: int | None
    mpp: float | None
    meta: dict = field(default_factory=dict)


def collect_items(input: str | os.PathLike, mode: str, out: Path, label_column: str | None = None,
                  log=print) -> tuple[list[ExtractItem], list[Skip]]:
    """Instances to embed: kept patches of a prepared dataset (``tiles``) or whole images (``image``).

    A plain folder or manifest in ``tiles`` mode is prepared first (default preset) into ``OUT/prepared``.
    """
    p = Path(input)
    if not p.exists():
        raise InputError(f"{input}: no such file or folder")
    skips: list[Skip] = []
    if not is_prepared_dir(p) and mode == "tiles":
        from cytofm.config.loader import build_config
        from cytofm.data.prepare import NothingUsable, run_prepare

        cfg = build_config(PrepareConfig, "prepare", "default", values={
            "metadata": {"labels_from_folders": False, "label_column": label_column}, "output": {"qa_thumbnails": 0}})
        log(f"{input} is not a prepared dataset: preparing it with the default preset into {out / 'prepared'}")
        try:
            res = run_prepare([str(p)], out / "prepared", cfg, log=log)
        except NothingUsable as e:
            raise InputError(str(e)) from None
        skips += res.skipped
        p = out / "prepared"
    items: list[ExtractItem] = []
    if is_prepared_dir(p):
        for it in load_prepared(p):
            if mode == "tiles" and not it.whole:
                items.append(ExtractItem(it.id, it.path, it.kind, False, it.coords(), it.size0, it.patch_size, it.mpp, it.meta))
            else:
                items.append(ExtractItem(it.id, it.path, it.kind, True, np.zeros((1, 2), np.int64), None, None, it.mpp, it.meta))
        return items, skips
    cfg = PrepareConfig.model_validate({"metadata": {"label_column": label_column}})
    found, more, _ = discover([str(p)], cfg)
    skips += more
    for it in found:
        meta = dict(it.meta)
        if p.is_dir():  # class sub-folders become the label column
            rel = it.path.relative_to(p)
            if len(rel.parts) > 1 and "label" not in meta:
                meta["label"] = rel.parts[0]
        items.append(ExtractItem(it.id, it.path, it.kind, True, np.zeros((1, 2), np.int64), None, None, None, meta))
    return items, skips


class _Instances(torch.utils.data.Dataset):
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
            src = open_source(it.path, it.kind, it.mpp)
            self.cache[it.id] = src
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)[1].close()
        return src

    def __getitem__(self, k: int):
        i, j = self.index[k]
        it = self.items[i]
        try:
            src = self._source(it)
            if it.whole:
                rgb = src.read(0, 0, (src.width, src.height))
            else:
                x, y = it.coords[j]
                rgb = src.read(int(x), int(y), it.size0, it.out_size)
            return self.encoder.preprocess(rgb), i, j, ""
        except ImageReadError as e:
            return torch.zeros(3, self.encoder.input_size, self.encoder.input_size), i, j, str(e)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    views = []
    for flip in (False, True):
        v = x.flip(-1) if flip else x
        views += [torch.rot90(v, k, dims=(-2, -1)) for k in range(4)]
    return views


@torch.inference_mode()
def embed_batch(encoder: Encoder, x: torch.Tensor, device: torch.device, dtype, tta: bool) -> np.ndarray:
    x = x.to(device, non_blocking=True)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        if tta:
            f = torch.stack([encoder.model(v).float() for v in _dihedral(x)]).mean(0)
        else:
            f = encoder.model(x).float()
    return f.cpu().numpy()


def run_extract(encoder: Encoder, input: str | os.PathLike, mode: str, out: str | os.PathLike, batch_size: int = 64,
                tta: bool = False, workers: int = 1, device: str = "auto", precision: str = "auto",
                label_column: str | None = None, progress=None, log=print) -> dict:
    """Embed every instance; finished items are skipped on a re-run, partial ones never look finished."""
    if mode not in ("image", "tiles"):
        raise InputError(f"--mode must be 'image' or 'tiles', not '{mode}'")
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    items, skips = collect_items(input, mode, out, label_column, log)
    if not items:
        raise InputError(f"{input}: nothing to extract")
    dev = pick_device(device)
    # the handcrafted baseline and CNNs run in fp32; ViTs in bf16 where the hardware has it
    dtype = pick_dtype(precision, dev) if precision in ("auto", "bf16") and encoder.is_vit else None
    if encoder.is_vit:
        from cytofm.ssl.backbone import set_fused_attn

        set_fused_attn(encoder.model, dev.type == "cuda")
    encoder.model.to(dev).eval()
    attrs_common = {"encoder": encoder.name, "encoder_spec": encoder.spec, "weights_hash": encoder.weights_hash,
                    "embed_dim": encoder.embed_dim, "input_size": encoder.input_size, "mode": mode, "tta": tta,
                    "cytofm_version": __version__}

    def h5_of(it: ExtractItem) -> Path:
        return out / "features" / f"{it.id}.h5"

    def done(it: ExtractItem) -> bool:
        a = item_attrs(h5_of(it))
        return a is not None and a.get("weights_hash") == encoder.weights_hash and a.get("mode") == mode and \
            bool(a.get("tta")) == tta

    if rank == 0:  # the resolved options next to the output
        import yaml

        (out / "config.yaml").write_text(f"# written by cytofm {__version__}\n" + yaml.safe_dump({
            "encoder": encoder.spec, "input": str(input), "mode": mode, "batch_size": batch_size, "tta": tta,
            "workers": workers, "device": str(dev), "precision": str(dtype or "fp32"), "label_column": label_column,
            "weights_hash": encoder.weights_hash, "embed_dim": encoder.embed_dim, "input_size": encoder.input_size},
            sort_keys=False))
    mine = [it for k, it in enumerate(items) if k % world == rank]
    todo = [it for it in mine if not done(it)]
    reused = len(mine) - len(todo)
    ds = _Instances(todo, encoder)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=lambda b: (torch.stack([x[0] for x in b]), [x[1] for x in b],
                                                               [x[2] for x in b], [x[3] for x in b]))
    task = progress.add_task(f"extract {encoder.name}", total=len(todo), rate="") if progress is not None else None
    feats: dict[int, list] = {}
    errors: dict[int, str] = {}
    n_inst = 0
    t0 = time.perf_counter()
    next_item = 0

    def flush(upto: int) -> None:
        nonlocal next_item
        while next_item < upto:
            it = todo[next_item]
            if next_item in errors:
                skips.append(Skip(str(it.path), errors[next_item]))
                log(f"skipped: {it.path}: {errors[next_item]}")
            else:
                f = np.concatenate(feats.pop(next_item))
                write_item(h5_of(it), f, it.coords, {
                    **attrs_common, "source_path": str(it.path), **extract_attrs(it), "mpp": it.mpp or np.nan,
                    "whole": it.whole})
            feats.pop(next_item, None)
            next_item += 1
            if progress is not None:
                el = max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=1, rate=f"{n_inst / el:.1f} instances/s")

    for x, ii, _, errs in loader:
        f = embed_batch(encoder, x, dev, dtype, tta)
        n_inst += len(ii)
        for row, (i, e) in enumerate(zip(ii, errs, strict=True)):
            if e:
                errors.setdefault(i, e)
            feats.setdefault(i, []).append(f[row:row + 1])
        flush(min(ii))  # items before the smallest index in this batch are complete
    flush(len(todo))
    if distributed:
        dist.barrier()
    if rank == 0:
        rows = []
        for it in items:
            h5 = h5_of(it)
            if h5.exists() and done(it):
                rows.append({"id": it.id, "path": str(Path(it.path).resolve()), "h5": f"features/{it.id}.h5",
                             "n_instances": len(it.coords), **it.meta})
        write_csv(out / "manifest.csv", rows)
        write_csv(out / "skipped.csv", [{"path": s.path, "reason": s.reason} for s in skips], ["path", "reason"])
    el = time.perf_counter() - t0
    return {"items": len(items), "extracted": len(todo) - len(errors), "reused": reused, "skipped": len(skips),
            "instances": n_inst, "seconds": el, "instances_per_s": n_inst / max(el, 1e-9)}
