"""``cytofm extract``: frozen features for every instance of a dataset, resumable, batched, bf16."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cytofm import __version__
from cytofm.data.sources.inputs import Skip
from cytofm.data.sources.large_image import worker_start_method
from cytofm.features.config import MODES, ExtractConfig
from cytofm.features.formats.geometry import extract_attrs
from cytofm.features.instances import Instances, collate
from cytofm.features.items import ExtractItem, collect_items
from cytofm.features.resume import Resume, item_key
from cytofm.features.store import claim_store, write_item
from cytofm.models.encoder import Encoder
from cytofm.utils.distributed import dtype_name, pick_device, pick_dtype
from cytofm.utils.errors import InputError
from cytofm.utils.io import portable_path, remove_stale_temporaries, write_csv
from cytofm.utils.lock import FolderLock
from cytofm.utils.progress import StageTask


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


def run_extract(encoder: Encoder, cfg: ExtractConfig, progress=None, log=print) -> dict:
    """Embed every instance of ``cfg.input`` into the store ``cfg.out``; finished items are skipped on a
    re-run, partial ones never look finished.

    The output folder is locked for the run (a second writer is refused), belongs to one encoder
    (``store.json``), and each item is reused only if its key (:func:`item_key`) is unchanged.
    """
    if cfg.input is None or cfg.out is None:
        raise InputError("extract needs an input and an output folder (--input PATH, --out DIR)")
    if cfg.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, not '{cfg.mode}'")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {cfg.batch_size}")
    if cfg.workers < 0:
        raise InputError(f"--workers must be 0 or more, not {cfg.workers}")
    try:
        dev = pick_device(cfg.device)
    except ValueError as e:
        raise InputError(str(e)) from None
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    lock = FolderLock(out, log, "extract") if rank == 0 else contextlib.nullcontext()
    with lock:
        run = _Run(encoder, cfg, out, dev, rank, world, distributed, log)
        return run.extract(progress)


@dataclass
class _Run:
    """One extraction into a locked store: this process's share of the items (item ``k`` goes to process
    ``k % world``), the items reused, the features written in item order."""

    encoder: Encoder
    cfg: ExtractConfig
    out: Path
    dev: torch.device
    rank: int
    world: int
    distributed: bool
    log: object

    def __post_init__(self):
        e = self.encoder
        self.identity = {"encoder": e.name, "weights_hash": e.weights_hash, "embed_dim": e.embed_dim,
                         "input_size": e.input_size, "mode": self.cfg.mode, "tta": self.cfg.tta}
        self.attrs = {**self.identity, "encoder_spec": e.spec, "cytofm_version": __version__}
        self.resume = Resume(self.out, self.identity)
        self.skips: list[Skip] = []
        self.dtype = None
        self.phash: dict[str, str] = {}

    def extract(self, progress) -> dict:
        cfg, out = self.cfg, self.out
        if self.rank == 0:
            remove_stale_temporaries(out / "features")
            e = self.encoder
            claim_store(out, self.identity, {"encoder_spec": e.spec, "cytofm_version": __version__,
                                             "mean": list(e.mean), "std": list(e.std),
                                             "readout": getattr(e.model, "pool", "")})
        (out / "features").mkdir(parents=True, exist_ok=True)
        self.chosen: dict = {}
        items, self.skips = collect_items(cfg.input, cfg.mode, out, cfg.label_column, self.log,
                                          cfg.cell_crop_um, cfg.image_field_um, self.chosen, cfg.image_mpp)
        if not items:
            raise InputError(f"{cfg.input}: nothing to extract")
        self._ready_encoder()
        if self.rank == 0:
            self._write_config()
        mine = [it for k, it in enumerate(items) if k % self.world == self.rank]
        todo, stale = self._todo(mine)
        reused = len(mine) - len(todo) - len(stale)
        t0 = time.perf_counter()
        n_inst, n_failed = (self._measure(todo) if self.encoder.name == "morphometrics"
                            else self._embed(todo, progress))
        if self.distributed:
            dist.barrier()
        if self.rank == 0:
            self._write_manifests(items, stale)
        el = time.perf_counter() - t0
        return {"items": len(items), "extracted": len(todo) - n_failed, "reused": reused,
                "skipped": len(self.skips), "instances": n_inst, "seconds": el,
                "instances_per_s": n_inst / max(el, 1e-9)}

    def _ready_encoder(self) -> None:
        """The handcrafted baseline and CNNs run in fp32; ViTs in bf16 where the hardware has it."""
        enc, cfg, dev = self.encoder, self.cfg, self.dev
        self.dtype = (pick_dtype(cfg.precision, dev) if cfg.precision in ("auto", "bf16") and enc.is_vit
                      else None)
        if enc.is_vit:
            from cytofm.models.vit import set_fused_attn

            set_fused_attn(enc.model, dev.type == "cuda")
        enc.model.to(dev).eval()
        if self.rank == 0:
            why = "" if self.dtype is not None or dev.type != "cpu" or not enc.is_vit else (
                " (this CPU has no bf16 units)" if cfg.precision == "auto" else "")
            self.log(f"extract {enc.name}: device {dev}, precision {dtype_name(self.dtype)}{why}, "
                     f"batch {cfg.batch_size}")

    def _write_config(self) -> None:
        """The resolved options next to the output."""
        import yaml

        enc, cfg = self.encoder, self.cfg
        (self.out / "config.yaml").write_text(f"# written by cytofm {__version__}\n" + yaml.safe_dump({
            "encoder": enc.spec, "input": str(cfg.input), "mode": cfg.mode, "batch_size": cfg.batch_size,
            "tta": cfg.tta, "workers": cfg.workers, "device": str(self.dev),
            "precision": str(self.dtype or "fp32"),
            "label_column": cfg.label_column, "cell_crop_um": cfg.cell_crop_um,
            "image_field_um": self.chosen.get("image_field_um", cfg.image_field_um),
            "image_mpp": self.chosen.get("image_mpp", cfg.image_mpp),
            "weights_hash": enc.weights_hash, "embed_dim": enc.embed_dim,
            "input_size": enc.input_size}, sort_keys=False))

    def _todo(self, mine: list[ExtractItem]) -> tuple[list[ExtractItem], set[str]]:
        """The items to embed now, and those whose prepared source changed since (skipped, said why)."""
        todo, stale = [], set()
        for it in mine:
            why = self.resume.stale_source(it)
            if why is not None:
                stale.add(it.id)
                self.skips.append(Skip(str(it.path), why))
                self.log(f"skipped: {it.path}: {why}")
            elif not self.resume.done(it):
                todo.append(it)
        for h5 in self.resume.unreadable:
            self.log(f"note: {portable_path(h5, self.out)} is unreadable (truncated or damaged); its item is "
                     "extracted again")
        return todo, stale

    def _embed(self, todo: list[ExtractItem], progress) -> tuple[int, int]:
        """Embed ``todo`` in batches; an item is written as soon as its last instance is embedded. Returns
        the instances written and the items that failed."""
        cfg = self.cfg
        loader = torch.utils.data.DataLoader(
            Instances(todo, self.encoder), batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
            collate_fn=collate, multiprocessing_context=worker_start_method() if cfg.workers else None)
        task = StageTask(progress, f"extract {self.encoder.name}", len(todo), rate="")
        feats: dict[int, list] = {}
        errors: dict[int, str] = {}
        state = {"next": 0, "instances": 0, "t0": time.perf_counter()}

        def flush(upto: int) -> None:
            while state["next"] < upto:
                k = state["next"]
                if k in errors:
                    self.skips.append(Skip(str(todo[k].path), errors[k]))
                    self.log(f"skipped: {todo[k].path}: {errors[k]}")
                else:
                    state["instances"] += self._write(todo[k], np.concatenate(feats.pop(k)))
                feats.pop(k, None)
                state["next"] = k + 1
                el = max(time.perf_counter() - state["t0"], 1e-9)
                task.update(advance=1, rate=f"{state['instances'] / el:.1f} instances/s")

        with task:
            for x, ii, _, errs, hashes in loader:
                f = embed_batch(self.encoder, x, self.dev, self.dtype, cfg.tta)
                for row, (i, e, ph) in enumerate(zip(ii, errs, hashes, strict=True)):
                    if e:
                        errors.setdefault(i, e)
                    if ph:
                        self.phash[todo[i].id] = ph
                    feats.setdefault(i, []).append(f[row:row + 1])
                flush(min(ii))  # items before the smallest index in this batch are complete
            flush(len(todo))
        return state["instances"], len(errors)

    def _measure(self, todo: list[ExtractItem]) -> tuple[int, int]:
        """``--encoder morphometrics``: each cell's measurements as its features (no pixel is read)."""
        from cytofm.data.cells.morphometrics import morphometric_features
        from cytofm.data.cells.store import read_cells

        if self.cfg.mode != "cells":
            raise InputError("--encoder morphometrics reads the cells' measurements: use --mode cells")
        n = 0
        for it in todo:
            n += self._write(it, morphometric_features(read_cells(it.cells), it.typical_um or 7.5))
        return n, 0

    def _write(self, it: ExtractItem, f: np.ndarray) -> int:
        st, d = self.resume.digest(it)
        write_item(self.resume.h5(it), f, it.coords, planes=it.planes, attrs={
            **self.attrs, "source_path": portable_path(it.path, self.out), **extract_attrs(it),
            "mpp": it.mpp or np.nan, "whole": it.whole, "source_sha256": d, "source_stat": st,
            "source_phash": self.phash.pop(it.id, ""), "item_key": item_key(it, self.identity, d)})
        return len(f)

    def _write_manifests(self, items: list[ExtractItem], stale: set[str]) -> None:
        out = self.out
        rows = [{"id": it.id, "path": portable_path(it.path, out), "h5": f"features/{it.id}.h5",
                 "n_instances": len(it.coords), **it.meta}
                for it in items if it.id not in stale and self.resume.done(it)]
        write_csv(out / "manifest.csv", rows)
        write_csv(out / "skipped.csv",
                  [{"path": portable_path(s.path, out), "reason": s.reason} for s in self.skips],
                  ["path", "reason"])
