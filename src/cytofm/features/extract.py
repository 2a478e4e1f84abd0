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
from cytofm.data.prepare.config import PrepareConfig
from cytofm.data.prepare.prepared import is_prepared_dir, load_prepared
from cytofm.data.provenance.hashing import hash_rgb
from cytofm.data.sources.image_io import BUDGET_PIXELS, ImageReadError
from cytofm.data.sources.inputs import Skip, discover
from cytofm.data.sources.item_ids import ids_in_outputs
from cytofm.data.sources.large_image import worker_start_method
from cytofm.data.sources.source import open_source
from cytofm.features.config import MODES, ExtractConfig
from cytofm.features.formats.geometry import extract_attrs
from cytofm.features.store import claim_store, item_attrs, write_item
from cytofm.models.encoder import Encoder
from cytofm.utils.distributed import dtype_name, pick_device, pick_dtype
from cytofm.utils.errors import InputError
from cytofm.utils.hashing import digest_of, file_digest
from cytofm.utils.io import portable_path, remove_stale_temporaries, write_csv
from cytofm.utils.lock import FolderLock
from cytofm.utils.progress import StageTask

# a whole image above the memory budget is read downsampled to this side (the encoder resizes it further)
WHOLE_MAX_SIDE = 4096


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
    prepared_digest: str = ""  # the source's content hash when it was prepared ("" for raw inputs)
    cells: Path | None = None  # mode cells: the source's cells/<id>.h5
    typical_um: float | None = None  # mode cells: the typical cell diameter it was prepared with
    planes: np.ndarray | None = None  # z-stacks: the plane of each instance (None: the policy's)
    z: str = ""  # z-stacks: the plane policy it was prepared with


def collect_items(input: str | os.PathLike, mode: str, out: Path, label_column: str | None = None,
                  log=print, cell_crop_um: float | None = None) -> tuple[list[ExtractItem], list[Skip]]:
    """Instances to embed: kept patches of a prepared dataset (``tiles``), its detected cells (``cells``)
    or whole images (``image``).

    A plain folder or manifest in ``tiles`` mode is prepared first (default preset) into ``OUT/prepared``.
    """
    p = Path(input)
    if not p.exists():
        raise InputError(f"{input}: no such file or folder")
    if mode == "cells":
        return cell_items(p, cell_crop_um)
    skips: list[Skip] = []
    if not is_prepared_dir(p) and mode == "tiles":
        from cytofm.config.loader import build_config
        from cytofm.data.prepare.run import NothingUsable, run_prepare

        cfg = build_config(PrepareConfig, "prepare", "default", values={
            "metadata": {"labels_from_folders": False, "label_column": label_column},
            "output": {"qa_thumbnails": 0}})
        log(f"{input} is not a prepared dataset: preparing it with the default preset into "
            f"{out / 'prepared'}")
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
                items.append(ExtractItem(it.id, it.path, it.kind, False, it.coords(), it.size0, it.patch_size,
                                         it.mpp, it.meta, it.digest, planes=it.planes(), z=it.z))
            else:  # a z-stack's whole image once per recorded plane (all: every plane)
                planes = it.planes() if it.whole else None
                coords = np.zeros((1 if planes is None else len(planes), 2), np.int64)
                items.append(ExtractItem(it.id, it.path, it.kind, True, coords, None, None, it.mpp, it.meta,
                                         it.digest, planes=planes, z=it.z))
        return items, skips
    cfg = PrepareConfig.model_validate({"metadata": {"label_column": label_column}})
    collisions: list[dict] = []
    found, more, notes = discover([str(p)], cfg, ids_in_outputs(out / "features", out), collisions)
    for n in notes:
        log(f"note: {n}")
    write_csv(out / "id_collisions.csv", [{**c, "path": portable_path(c["path"], out)} for c in collisions],
              ["path", "id", "shared_name"])
    skips += more
    for it in found:
        meta = dict(it.meta)
        if p.is_dir():  # class sub-folders become the label column
            rel = it.path.relative_to(p)
            if len(rel.parts) > 1 and "label" not in meta:
                meta["label"] = rel.parts[0]
        items.append(ExtractItem(it.id, it.path, it.kind, True, np.zeros((1, 2), np.int64), None, None, None,
                                 meta))
    return items, skips


def cell_items(folder: Path, crop_um: float | None) -> tuple[list[ExtractItem], list[Skip]]:
    """One instance per detected cell of a folder prepared with ``--cells``: its square
    (``cytofm.data.cells.crops``). A source without cells is said in ``skipped.csv``."""
    from cytofm.data.cells.crops import cell_squares, folder_crop_um

    if not is_prepared_dir(folder) or not (folder / "cells").is_dir():
        raise InputError(f"{folder}: --mode cells needs a folder prepared with `cytofm prepare --cells` "
                         "(cells/<id>.h5)")
    crop_um, typical = folder_crop_um(folder, crop_um)
    items, skips = [], []
    for it in load_prepared(folder):
        h5 = folder / "cells" / f"{it.id}.h5"
        if not h5.is_file():
            skips.append(Skip(str(it.path), f"no {h5.name} in {folder / 'cells'}: prepared without --cells"))
            continue
        sq = cell_squares(h5, it.mpp, crop_um)
        if sq is None:
            skips.append(Skip(str(it.path), "no cell found in it (cells.csv has none)"))
            continue
        # a z-stack's cells each from its sharpest plane (under all too: instance k is cell k everywhere)
        items.append(ExtractItem(it.id, it.path, it.kind, False, sq.coords, sq.size0, None, sq.mpp,
                                 {**it.meta, "cell_crop_um": crop_um}, it.digest, h5, typical, sq.plane,
                                 it.z))
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
            src = open_source(it.path, it.kind, it.mpp, it.z or None)
            self.cache[it.id] = src
            # at most `cache` sources open, and at most one whole-image budget of decoded pixels held
            while len(self.cache) > self.cache_size or (len(self.cache) > 1 and self._held() > BUDGET_PIXELS):
                self.cache.popitem(last=False)[1].close()
        return src

    def _held(self) -> int:
        return sum(s.width * s.height for s in self.cache.values() if getattr(s, "array", None) is not None)

    def __getitem__(self, k: int):
        i, j = self.index[k]
        it = self.items[i]
        z = None if it.planes is None else int(it.planes[j])  # a z-stack instance's recorded plane
        try:
            src = self._source(it)
            if it.whole:
                w, h = src.width, src.height
                # not held in memory
                s = min(1.0, WHOLE_MAX_SIDE / max(w, h)) if w * h > BUDGET_PIXELS else 1.0
                size = (max(1, round(w * s)), max(1, round(h * s)))
                rgb = src.read(0, 0, (w, h), size, z=z)
            else:
                x, y = it.coords[j]
                rgb = src.read(int(x), int(y), it.size0, it.out_size, z=z)
            return self.encoder.preprocess(rgb), i, j, "", _phash(src) if j == 0 else ""
        except ImageReadError as e:
            return torch.zeros(3, self.encoder.input_size, self.encoder.input_size), i, j, str(e), ""


def _phash(src) -> str:
    """The pHash of an image held whole, from the pixels already decoded (slides: ''), stored so that a
    later leakage check (``predict``, the pretraining guard) need not decode the source again."""
    array = getattr(src, "array", None)
    return hash_rgb(array)[0] if array is not None else ""


def _collate(b):
    return (torch.stack([x[0] for x in b]), [x[1] for x in b], [x[2] for x in b], [x[3] for x in b],
            [x[4] for x in b])


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


def item_key(it: ExtractItem, identity: dict, digest: str) -> str:
    """What an item's features depend on: the encoder, the source's content, and the regions read from it.

    Any change (another encoder, a replaced file, another patch size, resolution or foreground
    selection after re-preparing) gives another key, so a resume re-extracts exactly the changed items.
    """
    return digest_of(sorted(identity.items()), digest, it.kind, it.whole, it.size0, it.out_size,
                     None if it.mpp is None else round(float(it.mpp), 9),
                     np.asarray(it.coords, np.int64).tobytes(),
                     *(() if it.planes is None and not it.z else
                       (it.z, b"" if it.planes is None else np.asarray(it.planes, np.int64).tobytes())))


class _Resume:
    """Per-item resume decisions, with each source hashed at most once per run."""

    def __init__(self, out: Path, identity: dict):
        self.out, self.identity = out, identity
        self.digests: dict[str, tuple[str, str]] = {}
        self.unreadable: list[Path] = []

    def h5(self, it: ExtractItem) -> Path:
        return self.out / "features" / f"{it.id}.h5"

    def digest(self, it: ExtractItem, attrs: dict | None = None) -> tuple[str, str]:
        if it.id not in self.digests:
            cached = ((str(attrs.get("source_stat", "")), str(attrs.get("source_sha256", "")))
                      if attrs else None)
            self.digests[it.id] = file_digest(it.path, cached)
        return self.digests[it.id]

    def done(self, it: ExtractItem) -> bool:
        a = item_attrs(self.h5(it))
        if a is None and self.h5(it).exists():
            self.unreadable.append(self.h5(it))  # truncated or damaged: extracted again, and said so
        if a is None or "item_key" not in a:
            return False
        try:
            _, d = self.digest(it, a)
        except OSError:
            return False
        return a["item_key"] == item_key(it, self.identity, d)

    def stale_source(self, it: ExtractItem) -> str | None:
        """Why a prepared item cannot be used as prepared (its source changed since), or None."""
        if not it.prepared_digest:
            return None
        try:
            _, d = self.digest(it, item_attrs(self.h5(it)))
        except OSError as e:
            return f"cannot read source ({e.strerror or e})"
        if d != it.prepared_digest:
            return "the file changed since `cytofm prepare` (content differs); prepare it again"
        return None


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
        self.resume = _Resume(self.out, self.identity)
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
        items, self.skips = collect_items(cfg.input, cfg.mode, out, cfg.label_column, self.log,
                                          cfg.cell_crop_um)
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
            _Instances(todo, self.encoder), batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
            collate_fn=_collate, multiprocessing_context=worker_start_method() if cfg.workers else None)
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
