"""Does pretraining learn? Herlev 7-class linear probe on frozen [CLS] features: run vs random init, on
the EVALUATION part of the shipped split (the pretraining runs below never see those cells).

    python benchmarks/ssl_learning_signal.py RUN_DIR [SHARED_DATA] [--part pretrain]   # probe a finished run
    python benchmarks/ssl_learning_signal.py --train cpu,cpu_dinov2 [--shared SHARED_DATA] [--out DIR] \\
        [--set K=V]
        # pretrain each preset on the pretraining parts (BCCD fields, Herlev cells, CRIC), then probe each
    python benchmarks/ssl_learning_signal.py --train cpu,cpu_dinov2,cpu_koleo=cpu:loss.koleo_weight=0.1 \
        --seeds 0,1,2,3 --out DIR      # each arm ([NAME=]PRESET[:KEY=VALUE...]) trained once per seed
    (--part pretrain probes Herlev cells the runs trained on instead: whether a run learns what it is shown)

Features are the teacher backbone's [CLS] token at the run's global crop size (ImageNet normalisation,
L2-normalised); the probe is a standardised logistic regression, 5-fold stratified CV repeated with 3 fold
seeds, balanced accuracy (mean +- sd over the 15 folds). Random init and every run are probed on the same
folds in the same process, so their differences are paired (fold by fold). With one pretraining run per
preset the spread does not include training variation; with --seeds each arm is trained once per seed
and its margin gets an interval over runs x folds (cytofm.eval.intervals.seed_fold_interval) that does,
as does each arm's paired difference with the first arm. Finished runs and their probes (probe_<part>.json
in the run folder) are reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cytofm.eval.intervals import seed_fold_interval
from cytofm.ssl.backbone import MaskedViT, create_vit
from cytofm.ssl.checkpoint import CHECKPOINT, load_checkpoint
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.monitor import embed, load_labelled

SEEDS = (0, 1, 2)


def fold_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Balanced accuracy of each of 5 folds x len(SEEDS) fold seeds (the same folds for every encoder)."""
    from sklearn.metrics import balanced_accuracy_score

    out = []
    for seed in SEEDS:
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5)).fit(x[tr], y[tr])
            out.append(balanced_accuracy_score(y[te], clf.predict(x[te])))
    return np.asarray(out)


def eval_manifest(shared: Path, out_dir: Path, part: str = "eval") -> Path:
    """Herlev cells of one part of the split: ``eval`` (no run has seen them) or ``pretrain`` (every run
    here trains on them: a check that a run learns what it is shown, never a transfer number)."""
    from cytofm.data.split_files import write_part_manifest

    return write_part_manifest(shared / "herlev", "herlev", part, out_dir / f"herlev_{part}.csv")


def compare(run: Path, manifest: Path) -> dict[str, np.ndarray | int]:
    """Fold scores of the run's teacher backbone and of the same architecture at random init (seed 0)."""
    ck = load_checkpoint(run / CHECKPOINT)
    cfg = PretrainConfig.model_validate(ck["config"])
    size = cfg.crops.global_size
    x, y = load_labelled(str(manifest), "label7", size, max_items=100_000)
    trained = create_vit(cfg.model, size, drop_path=0.0)
    trained.load_state_dict(ck["teacher_backbone"])
    torch.manual_seed(0)
    random_vit = create_vit(cfg.model, size, drop_path=0.0)
    cpu = torch.device("cpu")
    feats = {k: embed(MaskedViT(v), x, cpu, torch.bfloat16)
             for k, v in (("pretrained", trained), ("random", random_vit))}
    return {"pretrained": fold_scores(feats["pretrained"], y), "random": fold_scores(feats["random"], y),
            "iteration": int(ck["iteration"]), "n": len(y)}


def cached_compare(run: Path, manifest: Path, part: str) -> dict[str, np.ndarray | int]:
    """:func:`compare`, kept in ``run/probe_<part>.json`` (the probe of a finished run never changes)."""
    path = run / f"probe_{part}.json"
    if path.exists():
        r = json.loads(path.read_text())
        return {k: np.asarray(v) if isinstance(v, list) else v for k, v in r.items()}
    r = compare(run, manifest)
    path.write_text(json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}))
    return r


def parse_arm(spec: str) -> tuple[str, str, list[str]]:
    """``[NAME=]PRESET[:KEY=VALUE...]`` -> (name, preset, overrides)."""
    head, *overrides = spec.split(":")
    name, _, preset = head.rpartition("=")
    return name or preset, preset, overrides


def seed_study(arms: list[str], seeds: list[int], shared: Path, work: Path, manifest: Path, part: str,
               overrides: list[str]) -> None:
    """Train every arm once per seed (seed-major, so a study cut short stays balanced), probe, summarise."""
    scores: dict[str, dict[int, dict]] = {}
    for seed in seeds:
        for spec in arms:
            name, preset, extra = parse_arm(spec)
            t0 = time.perf_counter()
            run = pretrain(preset, shared, work, [*overrides, *extra, f"train.seed={seed}"],
                           f"{name}_seed{seed}")
            scores.setdefault(name, {})[seed] = r = cached_compare(run, manifest, part)
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s; {report(name, r)}", flush=True)
    n = next(iter(next(iter(scores.values())).values()))["n"]
    where = "evaluation part" if part == "eval" else "PRETRAINING part (cells the runs were trained on)"
    print(f"\nHerlev 7-class, {where} ({n} cells), linear probe, 5 folds x {len(SEEDS)} fold seeds, "
          f"{len(seeds)} pretraining seeds per arm; 95% intervals over runs x folds:")
    ratio = 1 / 4  # 5-fold: n_test / n_train
    first = next(iter(scores))
    for name, by_seed in scores.items():
        diffs = np.stack([r["pretrained"] - r["random"] for r in by_seed.values()])
        iv = seed_fold_interval(diffs, ratio)
        runs = ", ".join(f"{d.mean():+.3f}" for d in diffs)
        print(f"{name:12s} - random init: {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] p={iv.p:.3f} "
              f"(runs: {runs})")
    for name, by_seed in scores.items():
        if name == first:
            continue
        common = [s for s in by_seed if s in scores[first]]
        diffs = np.stack([by_seed[s]["pretrained"] - scores[first][s]["pretrained"] for s in common])
        iv = seed_fold_interval(diffs, ratio)
        print(f"{name:12s} - {first}: {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] p={iv.p:.3f} "
              f"over {len(common)} seed pairs")


def pretrain(preset: str, shared: Path, work: Path, overrides: list[str] = (),
             name: str | None = None) -> Path:
    """Train ``preset`` on the pretraining parts (prepared once in ``work``) into ``work/run_<name>``
    (default: the preset's name); a finished run there is kept as it is. Returns the run folder."""
    from cytofm.config.loader import build_config
    from cytofm.data.config import PrepareConfig
    from cytofm.data.prepare import run_prepare
    from cytofm.data.split_files import write_part_manifest
    from cytofm.ssl.trainer import SSLTrainer

    quiet = ["output.qa_thumbnails=0"]
    if not (work / "bccd").exists():
        m = write_part_manifest(shared / "bccd", "bccd", "pretrain", work / "bccd_pretrain.csv")
        run_prepare([str(m)], work / "bccd", build_config(PrepareConfig, "prepare", "smear_fields", quiet),
                    log=lambda s: None)
    if not (work / "cric").exists():
        m = write_part_manifest(shared / "cric", "cric", "pretrain", work / "cric_pretrain.csv")
        run_prepare([str(m)], work / "cric", build_config(PrepareConfig, "prepare", "cells", quiet),
                    log=lambda s: None)
    herlev = write_part_manifest(shared / "herlev", "herlev", "pretrain", work / "herlev_pretrain.csv")
    cfg = build_config(PretrainConfig, "pretrain", preset, list(overrides))
    out = work / f"run_{name or preset}"
    SSLTrainer(cfg, [str(work / "bccd"), str(herlev), str(work / "cric")], out, log=print).run()
    return out


def report(name: str, r: dict) -> str:
    p, q = r["pretrained"], r["random"]
    d = p - q
    return (f"{name:12s} iteration {r['iteration']:4d}: pretrained {p.mean():.3f} +- {p.std():.3f}, "
            f"random init {q.mean():.3f} +- {q.std():.3f}, "
            f"paired difference {d.mean():+.3f} +- {d.std():.3f} "
            f"(folds better {int((d > 0).sum())}/{len(d)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="a finished run to probe")
    ap.add_argument("shared_pos", nargs="?", type=Path)
    ap.add_argument("--train", help="comma-separated presets to pretrain and probe, e.g. cpu,cpu_dinov2")
    ap.add_argument("--shared", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every --train preset (repeatable)")
    ap.add_argument("--seeds", help="comma-separated pretraining seeds: train each --train arm once per seed "
                    "and give intervals that include training variation")
    ap.add_argument("--part", choices=("eval", "pretrain"), default="eval",
                    help="Herlev part to probe: eval (unseen cells; default) or pretrain "
                         "(cells the runs trained on)")
    a = ap.parse_args()
    shared = a.shared or a.shared_pos or Path(os.environ.get(
        "CYTOFM_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    work = a.out or Path(tempfile.mkdtemp(prefix="learning_signal_"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = eval_manifest(shared, work, a.part)
    where = "evaluation part" if a.part == "eval" else "PRETRAINING part (cells the runs were trained on)"
    if a.train and a.seeds:
        seed_study(a.train.split(","), [int(x) for x in a.seeds.split(",")], shared, work, manifest, a.part,
                   a.overrides)
        return
    if a.train:
        results = {}
        for preset in a.train.split(","):
            t0 = time.perf_counter()
            run = pretrain(preset, shared, work, a.overrides)
            results[preset] = compare(run, manifest)
            print(f"{preset}: pretrained in {time.perf_counter() - t0:.0f} s")
        print(f"\nHerlev 7-class, {where} ({results[preset]['n']} cells), linear probe, "
              f"5 folds x {len(SEEDS)} seeds:")
        for preset, r in results.items():
            print(report(preset, r))
        names = list(results)
        for other in names[1:]:
            d = results[other]["pretrained"] - results[names[0]]["pretrained"]
            print(f"{other} - {names[0]}: {d.mean():+.3f} +- {d.std():.3f} over the same folds "
                  "(one run each)")
        return
    r = compare(a.run, manifest)
    print(f"Herlev 7-class, {where} ({r['n']} cells):")
    print(report(a.run.name, r))


if __name__ == "__main__":
    main()
