"""The pretraining loop, for any registered SSL method (iBOT, DINOv2): schedules per iteration, bf16
autocast, DDP, checkpoints, exact resume, collapse watch. What is specific to a method (networks, loss,
what the teacher sees) sits behind :class:`cytofm.ssl.methods.SSLMethod`."""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from cytofm.config.loader import config_dict, deep_merge, write_config
from cytofm.models.vit import set_fused_attn
from cytofm.ssl.checkpoint import (
    CHECKPOINT,
    backbone_state_from_release,
    load_backbone_into,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
    timm_model_args,
)
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.ssl.masking import masked_positions
from cytofm.ssl.methods import Views, build_method
from cytofm.ssl.optim import clip_gradients_per_param, ema_update, param_groups
from cytofm.ssl.schedules import cosine_value, linear_warmup_constant
from cytofm.utils.distributed import dtype_name, pick_device, pick_dtype
from cytofm.utils.progress import StageTask
from cytofm.utils.signals import Stopped, deferred_stop


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    progress_reason = "loss not finite"


# Settings that may differ between a run and its resumption: where and how fast it runs, how often it
# logs and saves. Every other key shapes the optimisation and must match the checkpoint.
RESUME_MAY_CHANGE = ("runtime.", "data.num_workers", "data.cache_sources", "train.save_every", "train.log_every",
                     "train.knn_every", "train.knn_data", "train.knn_label", "train.max_minutes", "train.stop_at",
                     "data.cache_budget_gb")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


_METHOD_NAMES = {"ibot": "iBOT", "dinov2": "DINOv2"}


def _with_defaults(ck_cfg: dict) -> dict:
    """A checkpoint's config with the keys added since it was written at their defaults (which are what
    that run used), so a resume compares like with like; keys it has are kept as written."""
    return deep_merge(config_dict(PretrainConfig()), ck_cfg)


# head settings that do not change the checkpoint's tensors: they may change on resume with --force-config
HEAD_RUNTIME = ("fp32", "freeze_last_layer_iters")


def _fixed_part(cfg: dict) -> dict:
    """The settings that decide what the checkpoint's tensors are."""
    head = {k: v for k, v in cfg.get("head", {}).items() if k not in HEAD_RUNTIME}
    return {"method": cfg.get("method"), "model": cfg.get("model"), "head": head}


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """``key: (checkpoint value, requested value)`` for every setting that must not change on resume."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys
            if a.get(k) != b.get(k) and not k.startswith(RESUME_MAY_CHANGE)}


@dataclass
class Schedules:
    cfg: PretrainConfig
    world: int = 1

    @property
    def lr_peak(self) -> float:
        total = self.cfg.train.batch_size * self.world
        if self.cfg.optim.lr_scaling == "sqrt_wrt_1024":
            return self.cfg.optim.base_lr * math.sqrt(total / 1024.0)
        return self.cfg.optim.base_lr * total / 256.0

    def at(self, it: int) -> dict[str, float]:
        o, lo, T = self.cfg.optim, self.cfg.loss, self.cfg.train.iterations
        return {
            "lr": cosine_value(it, T, self.lr_peak, o.min_lr, o.warmup_iters, 0.0),
            "wd": cosine_value(it, T, o.weight_decay, o.weight_decay_end),
            "momentum": cosine_value(it, T, o.momentum_teacher, o.momentum_teacher_end),
            "teacher_temp": linear_warmup_constant(it, lo.warmup_teacher_temp, lo.teacher_temp, lo.warmup_teacher_temp_iters),
            "teacher_patch_temp": linear_warmup_constant(it, lo.warmup_teacher_patch_temp, lo.teacher_patch_temp,
                                                         lo.warmup_teacher_temp_iters),
        }


class SSLTrainer:
    def __init__(self, cfg: PretrainConfig, data: list[str], out: str | os.PathLike, init_from: str | None = None,
                 log=print, progress=None, command: str = "", force_config: bool = False):
        self.cfg, self.out, self.log, self.progress = cfg, Path(out), log, progress
        self.force_config = force_config
        self.config_history: list[dict] = []
        self._forced = False  # resumed with changed settings under --force-config
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = pick_device(cfg.runtime.device)
        self.dtype = pick_dtype(cfg.runtime.precision, self.device)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        torch.manual_seed(cfg.train.seed)  # same init on every rank (DDP also broadcasts)
        self.method = build_method(cfg)
        self.student, self.teacher = self.method.student, self.method.teacher
        if self.rank:  # every other rank its own drop-path stream (rank 0 keeps the single-process one)
            torch.manual_seed(cfg.train.seed + 1_000_003 * self.rank)
        fused = cfg.runtime.fused_attn == "on" or (cfg.runtime.fused_attn == "auto" and self.device.type == "cuda")
        set_fused_attn(self.student, fused)
        set_fused_attn(self.teacher, fused)
        if cfg.runtime.compile:
            for net in (self.student, self.teacher):
                net.backbone.compile()  # in place: the module, its parameters and state-dict keys stay
        self.tables = [load_table(d) for d in data]
        self.batches = PretrainingBatches(self.tables, cfg, self.rank, self.student.backbone.patch_size)
        self.views = "device" if cfg.data.views == "auto" else cfg.data.views
        g = cfg.crops.global_size
        if g % self.student.backbone.patch_size or cfg.crops.local_size % self.student.backbone.patch_size:
            raise ValueError(f"crop sizes ({g}, {cfg.crops.local_size}) must be multiples of the patch size "
                             f"{self.student.backbone.patch_size}")
        self.loss_fn = self.method.criterion
        self.sched = Schedules(cfg, self.world)
        self.start_iter = 0
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.out / CHECKPOINT
        resumed = ckpt_path.exists()
        if resumed:
            self._restore(load_checkpoint(ckpt_path))
        elif init_from:
            state = backbone_state_from_release(load_checkpoint(init_from))
            load_backbone_into(self.student.backbone.vit, state, init_from)
            self.method.init_teacher()
            self.log(f"initialised student and teacher backbones from {init_from} (heads start fresh)")
        self.student.to(self.device)
        self.teacher.to(self.device)
        self.loss_fn.to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.student, cfg.optim.decay_tokens), lr=0.0,
                                           betas=tuple(cfg.optim.betas))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self._unchecked: list[tuple[int, torch.Tensor]] = []  # losses not yet checked for finiteness
        if resumed:
            self.optimizer.load_state_dict(self._pending["optimizer"])
            self.scaler.load_state_dict(self._pending["scaler"])
            self._restore_rng(self._pending)
            self.log(f"resumed from {ckpt_path} at iteration {self.start_iter}")
        self.model = self.student
        if self.distributed:
            self.model = DDP(self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.rank == 0:
            self._write_config(command)

    # --- checkpoints -------------------------------------------------------------------------------
    def _restore(self, ck: dict) -> None:
        ck_cfg, cfg = _with_defaults(ck["config"]), config_dict(self.cfg)
        if _fixed_part(ck_cfg) != _fixed_part(cfg):
            changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in config_changes(
                _fixed_part(ck_cfg), _fixed_part(cfg)).items())
            raise ValueError(f"{self.out / CHECKPOINT} was made with another method/model/head config ({changed}); "
                             "use a new --out")
        changes = config_changes(ck_cfg, cfg)
        if changes and not self.force_config:
            lines = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in changes.items())
            raise ValueError(f"{self.out / CHECKPOINT} was made with other settings ({lines}). Resume with the "
                             "checkpoint's settings (see its config.yaml), use a new --out, or continue with the new "
                             "settings on purpose with --force-config (recorded in the run)")
        self.config_history = list(ck.get("config_history", []))
        if changes:
            self.config_history.append({"iteration": int(ck["iteration"]),
                                        "changed": {k: [a, b] for k, (a, b) in changes.items()}})
            self.log(f"--force-config: continuing from iteration {ck['iteration']} with changed settings: "
                     + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        self._forced = bool(changes)
        self.student.load_state_dict(ck["student"])
        self.teacher.load_state_dict(ck["teacher"])
        self.loss_fn.load_state_dict(ck["loss"])
        self.start_iter = int(ck["iteration"])
        self._pending = ck

    def _restore_rng(self, ck: dict) -> None:
        states = ck.get("rng_per_rank")
        if states is None:  # checkpoints from before per-rank states: one state for every rank
            set_rng_state(ck["rng"])
        elif len(states) == self.world:
            set_rng_state(states[self.rank])
        else:
            set_rng_state(states[self.rank % len(states)])
            if self.rank == 0:
                self.log(f"warning: the checkpoint was written by {len(states)} process(es), this run has "
                         f"{self.world}: random streams (drop path) do not continue exactly")

    def _write_config(self, command: str) -> None:
        path = self.out / "config.yaml"
        if self._forced and path.exists():
            kept = self.out / f"config.until-{self.start_iter}.yaml"
            os.replace(path, kept)
            self.log(f"the settings used until iteration {self.start_iter} are kept in {kept.name}")
        elif self.start_iter and path.exists():
            return  # resuming with the same settings: config.yaml already says what the run uses
        write_config(self.cfg, path, command)

    def _gather(self, obj):
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def save(self, iteration: int) -> None:
        self.checked()  # never write a checkpoint after a non-finite loss
        rngs = self._gather(rng_state())  # every rank's streams, so each resumes its own
        if self.rank == 0:
            self._write_checkpoint(iteration, rngs)
        if self.distributed:  # nobody goes on (and perhaps reads it) before the checkpoint is there
            dist.barrier()

    def _write_checkpoint(self, iteration: int, rngs: list) -> None:
        save_atomic({
            "iteration": iteration,
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "teacher_backbone": self.teacher.backbone.vit.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs[0],
            "rng_per_rank": rngs,
            "world_size": self.world,
            "config": config_dict(self.cfg),
            "config_history": self.config_history,
            "arch": self.cfg.model.arch,
            "model_args": timm_model_args(self.teacher.backbone.vit, self.cfg.model.layerscale),
        }, self.out / CHECKPOINT)

    # --- one step ----------------------------------------------------------------------------------
    def step(self, batch: dict, it: int, sync: bool = True) -> dict:
        """One iteration. ``sync=False`` returns the metrics as device tensors and defers the finiteness
        check of the loss to :meth:`checked` (the training loop calls it at every log line and before
        every checkpoint): waiting for the GPU after each step would leave it idle while Python launches
        the next one."""
        cfg, dev = self.cfg, self.device
        s = self.sched.at(it)
        for g in self.optimizer.param_groups:
            g["lr"] = s["lr"]
            g["weight_decay"] = s["wd"] if g.get("apply_wd") else 0.0
        crops = [c.to(dev, non_blocking=True) for c in batch["crops"]]
        # the masks and the index of their masked tokens go to the device without a wait: made on the host
        # (by the loader), so that the host can queue this step while the device still runs the last one
        index = batch.get("mask_index")
        if index is None:
            index = masked_positions(batch["masks"])
        index = index.to(dev, non_blocking=True)
        masks = batch["masks"].to(dev, non_blocking=True)  # (2, B, h, w)
        B = crops[0].shape[0]
        views = Views(torch.cat(crops[:2]), masks.reshape(2 * B, *masks.shape[2:]),
                      torch.cat(crops[2:]) if len(crops) > 2 else None, B, (index[:, 0], index[:, 1]))
        autocast = torch.autocast(dev.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        out = self.method.losses(self.model, views, s, autocast)
        loss = out["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            clip_gradients_per_param(self.student, cfg.optim.clip_grad)
        if it < cfg.head.freeze_last_layer_iters:
            for p in self.method.last_layer_parameters():
                p.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        ema_update(self.teacher, self.student, s["momentum"])
        m = {"loss": loss.detach(), **{k: out[k].detach() for k in self.method.terms},
             "teacher_entropy": out["teacher_entropy"].detach(), "teacher_spread": out["teacher_spread"], **s}
        self._unchecked.append((it, m["loss"]))
        return self.checked(m) if sync else m

    def checked(self, m: dict | None = None) -> dict:
        """Metrics as floats, after checking every loss since the last check (one wait for the device);
        a non-finite one stops the run before anything more is saved."""
        if self._unchecked:
            its, losses = zip(*self._unchecked, strict=True)
            self._unchecked = []
            bad = (~torch.isfinite(torch.stack(losses))).nonzero().flatten().tolist()
            if bad:
                raise TrainingDiverged(f"loss is {losses[bad[0]].item()} at iteration {its[bad[0]]}; stopped, last "
                                       f"good checkpoint kept in {self.out / CHECKPOINT}")
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in (m or {}).items()}

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        T = cfg.train.iterations
        n_samples = sum(len(t) for t in self.tables)
        if self.rank == 0:
            epochs = T * cfg.train.batch_size * self.world / max(n_samples, 1)
            self.log(f"{_METHOD_NAMES.get(cfg.method, cfg.method)} {cfg.model.arch}: {T} iterations x {cfg.train.batch_size} images x {self.world} process(es) "
                     f"= {epochs:.1f} epochs of {n_samples} samples; lr peak {self.sched.lr_peak:.2e}; "
                     f"device {self.device}, precision {dtype_name(self.dtype)}"
                     + (" (this CPU has no bf16 units)" if self.dtype is None and self.device.type == "cpu"
                        and cfg.runtime.precision == "auto" else ""))
        if self.start_iter >= T:
            self.log(f"already finished ({self.start_iter} iterations)")
            return {}
        if cfg.train.stop_at is not None and self.start_iter >= cfg.train.stop_at:
            self.log(f"already at iteration {self.start_iter} >= train.stop_at={cfg.train.stop_at}; nothing to do")
            return {}
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, sampler=range(self.start_iter, T), num_workers=cfg.data.num_workers,
            persistent_workers=False, prefetch_factor=2 if cfg.data.num_workers else None,
            pin_memory=self.device.type == "cuda",  # page-locked batches: their copies to the GPU do not wait
            # its own generator: creating the loader must not consume the global RNG that drop-path uses,
            # or a resumed run would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(cfg.train.seed))
        metrics_path = self.out / "metrics.csv"
        fields = self._trim_metrics(metrics_path) if self.rank == 0 else None
        f = open(metrics_path, "a", newline="") if self.rank == 0 else None
        task = StageTask(self.progress if self.rank == 0 else None, "pretrain", T, self.start_iter, rate="")
        t0 = time.perf_counter()
        last = {}
        log_k = math.log(cfg.head.out_dim)
        writer_state = {"f": f, "writer": None, "fields": fields, "warned": False, "log_k": log_k}
        deadline = None if cfg.train.max_minutes is None else t0 + 60 * cfg.train.max_minutes
        monitor = self._knn_monitor()
        tb = self._tensorboard()
        it = self.start_iter
        done, consistent = self.start_iter, True  # the state is that of iteration `done` between two steps
        stop = None
        try:
            with task, deferred_stop() as stop:
                for batch in loader:
                    it = int(batch["iteration"])
                    if "images" in batch:  # device views: the crops are made here, on the training device
                        batch = self.dataset.views(batch, self.device)
                    self.student.train()
                    knn_now = monitor is not None and (it + 1 == T or (it + 1) % cfg.train.knn_every == 0)
                    consistent = False
                    m = self.step(batch, it, sync=False)
                    done, consistent = it + 1, True
                    task.update(completed=done)
                    if done % cfg.train.log_every == 0 or done == T or knn_now:
                        last = self._log_step(m, done, t0, writer_state, monitor, knn_now, tb, task)
                    if done % cfg.train.save_every == 0 or done == T:
                        self.save(done)
                    if cfg.train.stop_at is not None and done == cfg.train.stop_at and done < T:
                        if done % cfg.train.save_every:
                            self.save(done)
                        task.stop("train.stop_at")
                        self.log(f"stopped at iteration {done} (train.stop_at); run the command without it to resume")
                        break
                    # several processes agree on a stop at log lines only (agreeing reads a device value
                    # back: a wait for the device at every step)
                    if done < T and (not self.distributed or done % cfg.train.log_every == 0):
                        signalled, late = self._all_agree(bool(stop), deadline is not None and time.perf_counter() > deadline)
                        if signalled:
                            self._stop_on_signal(stop.name or "SIGTERM", done, task)  # another rank's signal
                        if late:
                            self.save(done)
                            task.stop(f"train.max_minutes={cfg.train.max_minutes:g}")
                            self.log(f"stopped at iteration {done} after train.max_minutes={cfg.train.max_minutes}; "
                                     "run the same command to resume")
                            break
        except Stopped:
            raise
        except Exception:
            # a stop signal can also reach the loader's workers, whose death then surfaces here, between
            # two steps: the state of the last finished step is still whole and worth saving
            if stop and consistent and not self.distributed:
                self._stop_on_signal(stop.name, done, task)
            raise
        finally:
            if f is not None:
                f.close()
            if tb is not None:
                tb.close()
        return last

    @functools.cached_property
    def dataset(self):
        """What the loader reads: the PIL batches, or (device views) the pool decoded once. Built on first
        use, so a refused resume or a finished run decodes nothing."""
        return self._device_batches() if self.views == "device" else self.batches

    def _device_batches(self):
        """Decode the pool once (said how big first; memory-mapped in RUN/cache when over budget)."""
        from cytofm.ssl.device_views import DeviceBatches, build_cache

        cfg = self.cfg
        refs = [(t, r) for t, table in enumerate(self.tables) for r in range(len(table))]
        side = cfg.data.cache_side or 2 * cfg.crops.global_size
        budget = None if cfg.data.cache_budget_gb is None else int(cfg.data.cache_budget_gb * 2**30)
        b = self.batches

        def size_of(i):
            t, r = refs[i]
            return b.sample_size(self.tables[t], self.tables[t].refs[r])

        def image_of(i):
            t, r = refs[i]
            return b._image(self.tables[t], self.tables[t].refs[r])

        cache = build_cache(size_of, image_of, len(refs), side, spill_dir=self.out / "cache", budget=budget,
                            log=self.log if self.rank == 0 else (lambda m: None))
        return DeviceBatches(b.sample_plan, cache, {ref: i for i, ref in enumerate(refs)}, cfg,
                             self.student.backbone.patch_size,
                             views_in_loader=self.device.type == "cpu" and cfg.data.num_workers > 0)

    def _log_step(self, m: dict, done: int, t0: float, ws: dict, monitor, knn_now: bool, tb, task) -> dict:
        """A log line: the metrics as floats (checked finite), metrics.csv, TensorBoard, progress, collapse watch."""
        cfg, T = self.cfg, self.cfg.train.iterations
        m = self.checked(m)
        el = time.perf_counter() - t0
        m["images_per_s"] = (done - self.start_iter) * cfg.train.batch_size * self.world / max(el, 1e-9)
        m["iteration"] = done
        m["entropy_ratio"] = m["teacher_entropy"] / ws["log_k"]
        if monitor is not None:
            m["knn_bacc"] = ""
            if knn_now:
                m["knn_bacc"] = round(monitor(self.teacher.backbone), 4)
                self.log(f"iteration {done}: kNN balanced accuracy {m['knn_bacc']:.3f} on {cfg.train.knn_data}")
        if tb is not None and done % cfg.train.log_every == 0:
            for k, v in m.items():
                if isinstance(v, float | int) and k != "iteration":
                    tb.add_scalar(k, v, done)
        if self.rank != 0:
            return m
        if done % cfg.train.log_every == 0 or done == T:
            if ws["writer"] is None:
                ws["writer"] = csv.DictWriter(ws["f"], fieldnames=ws["fields"] or list(m), restval="",
                                              extrasaction="ignore")
                if not ws["fields"]:
                    ws["writer"].writeheader()
            ws["writer"].writerow(m)
            ws["f"].flush()
        if task.progress is not None:
            terms = " ".join(f"{k.removeprefix('loss_')} {m[k]:.3f}" for k in self.method.terms)
            task.update(completed=done, rate=(
                f"loss {m['loss']:.3f} ({terms}) "
                f"lr {m['lr']:.1e} T {m['teacher_temp']:.3f}/{m['teacher_patch_temp']:.3f} "
                f"m {m['momentum']:.4f} {m['images_per_s']:.1f} img/s"))
        if not ws["warned"] and done > max(cfg.loss.warmup_teacher_temp_iters, 50) and (
                m["entropy_ratio"] > 0.98 or m["entropy_ratio"] < 0.02 or m["teacher_spread"] < 1e-4):
            self.log(f"warning: possible collapse at iteration {done}: teacher [CLS] entropy "
                     f"{m['entropy_ratio']:.2f} x log K, spread {m['teacher_spread']:.2e}")
            ws["warned"] = True
        return m

    def _stop_on_signal(self, name: str, done: int, task: StageTask) -> None:
        """A scheduler's (or a user's) stop: save the state of iteration ``done`` and say where it is."""
        if done > self.start_iter and done % self.cfg.train.save_every:  # else saved already
            self.save(done)
        task.stop(name)
        where = self.out / CHECKPOINT
        raise Stopped(name, f"{name}: stopped at iteration {done} of {self.cfg.train.iterations}; checkpoint "
                            f"{where} holds it; run the same command to resume")

    def _all_agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank as soon as one rank says so (a stop must be taken together)."""
        if not self.distributed:
            return flags
        t = torch.tensor([1.0 if f else 0.0 for f in flags],
                         device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v > 0) for v in t.tolist())

    def _trim_metrics(self, path: Path) -> list[str] | None:
        """Keep the rows up to the iteration the run resumes from, so each iteration is logged once however
        often the run was killed after logging and before saving; returns the existing header."""
        if not path.exists() or path.stat().st_size == 0:
            return None
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames
            rows = [r for r in reader if r.get("iteration", "").isdigit() and int(r["iteration"]) <= self.start_iter]
        if not fields:
            return None
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
        return list(fields)

    def _knn_monitor(self):
        cfg = self.cfg
        if self.rank != 0 or not cfg.train.knn_every or not cfg.train.knn_data:
            return None
        from cytofm.ssl.monitor import KNNMonitor

        mon = KNNMonitor(cfg.train.knn_data, cfg.train.knn_label, cfg.crops.global_size, self.device, self.dtype)
        if self.start_iter == 0:
            self.log(f"kNN monitor: {len(mon.y)} labelled images; at initialisation balanced accuracy "
                     f"{mon(self.teacher.backbone):.3f}")
        return mon

    def _tensorboard(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: CSV only
            return None
        return SummaryWriter(str(self.out / "tensorboard"))


