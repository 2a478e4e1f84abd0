"""The resume policy of a pretraining run: which settings may change between a run and its resumption,
what a checkpoint's settings are compared with, how ``--force-config`` is recorded, and how each process
takes up its own random streams again. The trainer restores tensors; this module decides whether it may."""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.config.loader import config_dict, deep_merge, write_config
from cytofm.ssl.checkpoint import CHECKPOINT, set_rng_state
from cytofm.ssl.config import PretrainConfig

# Settings that may differ between a run and its resumption: where and how fast it runs, how often it
# logs and saves. Every other key shapes the optimisation and must match the checkpoint.
RESUME_MAY_CHANGE = ("runtime.", "data.num_workers", "data.cache_sources", "train.save_every",
                     "train.log_every", "train.knn_every", "train.knn_data", "train.knn_label",
                     "train.max_minutes", "train.stop_at", "data.cache_budget_gb")
# head settings that do not change the checkpoint's tensors: they may change on resume with --force-config
HEAD_RUNTIME = ("fp32", "freeze_last_layer_iters")


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a.b": value}`` from nested dicts (tuples as lists, as YAML gives them back)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def with_defaults(ck_cfg: dict) -> dict:
    """A checkpoint's config with the keys added since it was written at their defaults (which are what
    that run used), so a resume compares like with like; keys it has are kept as written."""
    return deep_merge(config_dict(PretrainConfig()), ck_cfg)


def fixed_part(cfg: dict) -> dict:
    """The settings that decide what the checkpoint's tensors are."""
    head = {k: v for k, v in cfg.get("head", {}).items() if k not in HEAD_RUNTIME}
    return {"method": cfg.get("method"), "model": cfg.get("model"), "head": head}


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """``key: (checkpoint value, requested value)`` for every setting that must not change on resume."""
    a, b = flatten(old), flatten(new)
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys
            if a.get(k) != b.get(k) and not k.startswith(RESUME_MAY_CHANGE)}


def check_resume(ck: dict, cfg: PretrainConfig, out: Path, force: bool, log=print) -> tuple[list[dict], bool]:
    """Whether the run in ``out`` may continue from ``ck`` with ``cfg``: refused when the tensors would not
    fit (method, model, head) or, without ``force``, when any optimisation setting changed. Returns the
    run's config history (with this resumption's changes appended) and whether settings changed."""
    ck_cfg, new = with_defaults(ck["config"]), config_dict(cfg)
    if fixed_part(ck_cfg) != fixed_part(new):
        changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in config_changes(
            fixed_part(ck_cfg), fixed_part(new)).items())
        raise ValueError(f"{out / CHECKPOINT} was made with another method/model/head config ({changed}); "
                         "use a new --out")
    changes = config_changes(ck_cfg, new)
    if changes and not force:
        lines = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in changes.items())
        raise ValueError(f"{out / CHECKPOINT} was made with other settings ({lines}). Resume with the "
                         "checkpoint's settings (see its config.yaml), use a new --out, or continue with the "
                         "new settings on purpose with --force-config (recorded in the run)")
    history = list(ck.get("config_history", []))
    if changes:
        history.append({"iteration": int(ck["iteration"]),
                        "changed": {k: [a, b] for k, (a, b) in changes.items()}})
        log(f"--force-config: continuing from iteration {ck['iteration']} with changed settings: "
            + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
    return history, bool(changes)


def restore_rng(ck: dict, rank: int, world: int, log=print) -> None:
    """Each process takes up its own random streams (drop path); with another number of processes the
    streams are reused in turn, and rank 0 says that they no longer continue exactly."""
    states = ck.get("rng_per_rank")
    if states is None:  # checkpoints from before per-rank states: one state for every rank
        set_rng_state(ck["rng"])
    elif len(states) == world:
        set_rng_state(states[rank])
    else:
        set_rng_state(states[rank % len(states)])
        if rank == 0:
            log(f"warning: the checkpoint was written by {len(states)} process(es), this run has "
                f"{world}: random streams (drop path) do not continue exactly")


def write_run_config(out: Path, cfg: PretrainConfig, start_iter: int, forced: bool, command: str,
                     log=print) -> None:
    """``config.yaml`` says what the run uses: kept on a plain resume; after ``--force-config`` the old one
    is kept as ``config.until-<iteration>.yaml`` beside the new."""
    path = out / "config.yaml"
    if forced and path.exists():
        kept = out / f"config.until-{start_iter}.yaml"
        os.replace(path, kept)
        log(f"the settings used until iteration {start_iter} are kept in {kept.name}")
    elif start_iter and path.exists():
        return
    write_config(cfg, path, command)
