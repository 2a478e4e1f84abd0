"""The pretraining loop, for any registered SSL method (iBOT, DINOv2): schedules per iteration, bf16
autocast, DDP, checkpoints, exact resume, collapse watch. What is specific to a method (networks, loss,
what the teacher sees) sits behind :class:`cytofm.ssl.methods.SSLMethod`."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from cytofm.config.loader import config_dict
from cytofm.models.loading import adapt_timm_vit, backbone_state_from_release, load_strictly
from cytofm.models.vit import set_fused_attn
from cytofm.ssl.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_atomic, timm_model_args
from cytofm.ssl.collectives import any_rank, distributed, gather
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.data import PretrainingBatches, load_table
from cytofm.ssl.masking import masked_positions
from cytofm.ssl.method_registry import METHODS
from cytofm.ssl.methods import Views, build_method
from cytofm.ssl.metrics_log import MetricsLog
from cytofm.ssl.optim import clip_gradients_per_param, ema_update, param_groups
from cytofm.ssl.resume import check_resume, restore_rng, write_run_config
from cytofm.ssl.schedules import Schedules
from cytofm.utils.distributed import dtype_name, pick_device, pick_dtype
from cytofm.utils.errors import InputError
from cytofm.utils.progress import StageTask
from cytofm.utils.signals import Stopped, deferred_stop


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    progress_reason = "loss not finite"


def load_tables(data: list[str], cfg: PretrainConfig) -> list:
    """The --data sources as sample tables, cells or patches as ``data.cells`` says for each."""
    cells = cfg.data.cells or [False] * len(data)
    if len(cells) != len(data):
        raise InputError(f"data.cells has {len(cells)} values for {len(data)} --data sources")
    return [load_table(d, cfg.data.plane_views, c, cfg.data.cell_crop_um)
            for d, c in zip(data, cells, strict=True)]


class SSLTrainer:
    """Trains ``cfg.method`` on the pools in ``data`` into the run folder ``out``, resuming from its
    checkpoint when there is one (:mod:`cytofm.ssl.resume` decides whether it may). ``knn_probe``: the
    classifier of the kNN monitor (``train.knn_data``; :func:`cytofm.ssl.monitor.knn_balanced_accuracy`),
    given by the caller because evaluation sits above pretraining (``cytofm pretrain``: eval's kNN probe)."""

    def __init__(self, cfg: PretrainConfig, data: list[str], out: str | os.PathLike,
                 init_from: str | None = None, log=print, progress=None, command: str = "",
                 force_config: bool = False, knn_probe: Callable | None = None):
        self.cfg, self.out, self.log, self.progress = cfg, Path(out), log, progress
        self.force_config, self.knn_probe = force_config, knn_probe
        self.config_history: list[dict] = []
        self._forced = False  # resumed with changed settings under --force-config
        self.distributed = distributed()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if self._monitor_on and knn_probe is None:
            raise ValueError("train.knn_data: the kNN monitor needs a probe (SSLTrainer(knn_probe=...))")
        self.device = pick_device(cfg.runtime.device)
        self.dtype = pick_dtype(cfg.runtime.precision, self.device)
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        torch.manual_seed(cfg.train.seed)  # same init on every rank (DDP also broadcasts)
        self.method = build_method(cfg)
        self.student, self.teacher = self.method.student, self.method.teacher
        if self.rank:  # every other rank its own drop-path stream (rank 0 keeps the single-process one)
            torch.manual_seed(cfg.train.seed + 1_000_003 * self.rank)
        self._runtime_networks()
        self.tables = load_tables(data, cfg)
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
            load_strictly(self.student.backbone.vit, state, init_from, adapt=adapt_timm_vit)
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
            restore_rng(self._pending, self.rank, self.world, self.log)
            self.log(f"resumed from {ckpt_path} at iteration {self.start_iter}")
        self.model = self.student
        if self.distributed:
            self.model = DDP(self.student, device_ids=[self.device.index] if self.device.type == "cuda"
                             else None)
        if self.rank == 0:
            write_run_config(self.out, self.cfg, self.start_iter, self._forced, command, self.log)

    def _runtime_networks(self) -> None:
        """Fused attention (``runtime.fused_attn``) and ``torch.compile`` (``runtime.compile``) of both
        networks."""
        rt = self.cfg.runtime
        fused = rt.fused_attn == "on" or (rt.fused_attn == "auto" and self.device.type == "cuda")
        for net in (self.student, self.teacher):
            set_fused_attn(net, fused)
            if rt.compile:
                net.backbone.compile()  # in place: the module, its parameters and state-dict keys stay

    # --- checkpoints -------------------------------------------------------------------------------
    def _restore(self, ck: dict) -> None:
        self.config_history, self._forced = check_resume(ck, self.cfg, self.out, self.force_config, self.log)
        self.student.load_state_dict(ck["student"])
        self.teacher.load_state_dict(ck["teacher"])
        self.loss_fn.load_state_dict(ck["loss"])
        self.start_iter = int(ck["iteration"])
        self._pending = ck

    def save(self, iteration: int) -> None:
        self.checked()  # never write a checkpoint after a non-finite loss
        rngs = gather(rng_state())  # every rank's streams, so each resumes its own
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
                raise TrainingDiverged(f"loss is {losses[bad[0]].item()} at iteration {its[bad[0]]}; "
                                       f"stopped, last good checkpoint kept in {self.out / CHECKPOINT}")
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in (m or {}).items()}

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train from the start (or the checkpoint's iteration) to ``train.iterations``, or to a stop: a
        signal, ``train.stop_at``, ``train.max_minutes``. Returns the last logged metrics."""
        T = self.cfg.train.iterations
        if self.rank == 0:
            self._announce()
        if self.start_iter >= T:
            self.log(f"already finished ({self.start_iter} iterations)")
            return {}
        if self.cfg.train.stop_at is not None and self.start_iter >= self.cfg.train.stop_at:
            self.log(f"already at iteration {self.start_iter} >= train.stop_at={self.cfg.train.stop_at}; "
                     "nothing to do")
            return {}
        metrics = MetricsLog(self.out, self.start_iter, active=self.rank == 0)
        task = StageTask(self.progress if self.rank == 0 else None, "pretrain", T, self.start_iter, rate="")
        try:
            return self._loop(self._loader(), task, metrics)
        finally:
            metrics.close()

    def _announce(self) -> None:
        cfg, T = self.cfg, self.cfg.train.iterations
        n_samples = sum(len(t) for t in self.tables)
        epochs = T * cfg.train.batch_size * self.world / max(n_samples, 1)
        no_bf16 = self.dtype is None and self.device.type == "cpu" and cfg.runtime.precision == "auto"
        name = METHODS.entry(cfg.method).meta.get("display", cfg.method)  # as the first log line writes it
        self.log(f"{name} {cfg.model.arch}: {T} iterations x "
                 f"{cfg.train.batch_size} images x {self.world} process(es) = {epochs:.1f} epochs of "
                 f"{n_samples} samples; lr peak {self.sched.lr_peak:.2e}; device {self.device}, precision "
                 f"{dtype_name(self.dtype)}" + (" (this CPU has no bf16 units)" if no_bf16 else ""))

    def _loader(self) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=None, sampler=range(self.start_iter, cfg.train.iterations),
            num_workers=cfg.data.num_workers, persistent_workers=False,
            prefetch_factor=2 if cfg.data.num_workers else None,
            pin_memory=self.device.type == "cuda",  # page-locked batches: their copies to the GPU do not wait
            # its own generator: creating the loader must not consume the global RNG that drop-path uses,
            # or a resumed run would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(cfg.train.seed))

    def _loop(self, loader, task: StageTask, metrics: MetricsLog) -> dict:
        cfg, T = self.cfg, self.cfg.train.iterations
        t0 = time.perf_counter()
        deadline = None if cfg.train.max_minutes is None else t0 + 60 * cfg.train.max_minutes
        monitor = self._knn_monitor()
        last: dict = {}
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
                        last = self._log_step(m, done, t0, metrics, monitor if knn_now else None, task)
                    if done % cfg.train.save_every == 0 or done == T:
                        self.save(done)
                    if self._stops_here(done, stop, deadline, task):
                        break
        except Stopped:
            raise
        except Exception:
            # a stop signal can also reach the loader's workers, whose death then surfaces here, between
            # two steps: the state of the last finished step is still whole and worth saving
            if stop and consistent and not self.distributed:
                self._stop_on_signal(stop.name, done, task)
            raise
        return last

    def _stops_here(self, done: int, stop, deadline: float | None, task: StageTask) -> bool:
        """After iteration ``done``: stop at ``train.stop_at`` or past ``train.max_minutes`` (saved, True),
        or on a signal any process received (saved, raises :class:`Stopped`)."""
        cfg, T = self.cfg, self.cfg.train.iterations
        if cfg.train.stop_at is not None and done == cfg.train.stop_at and done < T:
            if done % cfg.train.save_every:
                self.save(done)
            task.stop("train.stop_at")
            self.log(f"stopped at iteration {done} (train.stop_at); run the command without it to resume")
            return True
        # several processes agree on a stop at log lines only (agreeing reads a device value back: a wait
        # for the device at every step)
        if done >= T or (self.distributed and done % cfg.train.log_every):
            return False
        signalled, late = any_rank((bool(stop), deadline is not None and time.perf_counter() > deadline),
                                   self.device)
        if signalled:
            self._stop_on_signal(stop.name or "SIGTERM", done, task)  # another rank's signal
        if late:
            self.save(done)
            task.stop(f"train.max_minutes={cfg.train.max_minutes:g}")
            self.log(f"stopped at iteration {done} after train.max_minutes={cfg.train.max_minutes}; "
                     "run the same command to resume")
        return late

    @functools.cached_property
    def dataset(self):
        """What the loader reads: the PIL batches, or (device views) the pool decoded once. Built on first
        use, so a refused resume or a finished run decodes nothing."""
        return self._device_batches() if self.views == "device" else self.batches

    def _device_batches(self):
        """Decode the pool once (said how big first; memory-mapped in RUN/cache when over budget)."""
        from cytofm.ssl.device_views import DeviceBatches

        cfg = self.cfg
        budget = None if cfg.data.cache_budget_gb is None else int(cfg.data.cache_budget_gb * 2**30)
        return DeviceBatches.of(self.batches, spill_dir=self.out / "cache", budget=budget,
                                log=self.log if self.rank == 0 else (lambda m: None),
                                views_in_loader=self.device.type == "cpu" and cfg.data.num_workers > 0)

    def _log_step(self, m: dict, done: int, t0: float, metrics: MetricsLog, monitor, task) -> dict:
        """A log line: the metrics as floats (checked finite), metrics.csv, TensorBoard, progress, collapse
        watch; ``monitor`` given: the kNN score now."""
        cfg, T = self.cfg, self.cfg.train.iterations
        m = self.checked(m)
        el = time.perf_counter() - t0
        m["images_per_s"] = (done - self.start_iter) * cfg.train.batch_size * self.world / max(el, 1e-9)
        m["iteration"] = done
        m["entropy_ratio"] = m["teacher_entropy"] / math.log(cfg.head.out_dim)
        if self._monitor_on:
            m["knn_bacc"] = "" if monitor is None else monitor.logged(self.teacher.backbone, done, self.log)
        if done % cfg.train.log_every == 0:
            metrics.scalars(m, done)
        if self.rank != 0:
            return m
        if done % cfg.train.log_every == 0 or done == T:
            metrics.row(m)
        if task.progress is not None:
            terms = " ".join(f"{k.removeprefix('loss_')} {m[k]:.3f}" for k in self.method.terms)
            task.update(completed=done, rate=(
                f"loss {m['loss']:.3f} ({terms}) "
                f"lr {m['lr']:.1e} T {m['teacher_temp']:.3f}/{m['teacher_patch_temp']:.3f} "
                f"m {m['momentum']:.4f} {m['images_per_s']:.1f} img/s"))
        metrics.collapse(m, done, max(cfg.loss.warmup_teacher_temp_iters, 50), self.log)
        return m

    def _stop_on_signal(self, name: str, done: int, task: StageTask) -> None:
        """A scheduler's (or a user's) stop: save the state of iteration ``done`` and say where it is."""
        if done > self.start_iter and done % self.cfg.train.save_every:  # else saved already
            self.save(done)
        task.stop(name)
        where = self.out / CHECKPOINT
        raise Stopped(name, f"{name}: stopped at iteration {done} of {self.cfg.train.iterations}; checkpoint "
                            f"{where} holds it; run the same command to resume")

    @property
    def _monitor_on(self) -> bool:
        return self.rank == 0 and bool(self.cfg.train.knn_every) and bool(self.cfg.train.knn_data)

    def _knn_monitor(self):
        if not self._monitor_on:
            return None
        from cytofm.ssl.monitor import KNNMonitor

        t = self.cfg.train
        mon = KNNMonitor(t.knn_data, t.knn_label, self.cfg.crops.global_size, self.device, self.dtype,
                         probe=self.knn_probe)
        if self.start_iter == 0:
            self.log(f"kNN monitor: {len(mon.y)} labelled images; at initialisation balanced accuracy "
                     f"{mon(self.teacher.backbone):.3f}")
        return mon
