"""Does pretraining learn? Herlev 7-class linear probe on frozen [CLS] features: run vs random init, on
the EVALUATION part of the shipped split (the pretraining runs below never see those cells).

    python benchmarks/ssl_learning_signal.py RUN_DIR [SHARED_DATA] [--part pretrain]   # probe a finished run
    python benchmarks/ssl_learning_signal.py --train cpu,cpu_dinov2 [--shared SHARED_DATA] [--out DIR] \\
        [--set K=V]
        # pretrain each preset on the pretraining parts (BCCD fields, Herlev cells, CRIC), then probe each
    python benchmarks/ssl_learning_signal.py --train cpu,cpu_dinov2,cpu_koleo=cpu:loss.koleo_weight=0.1 \
        --seeds 0,1,2,3 --out DIR      # each arm ([NAME=]PRESET[:KEY=VALUE...]) trained once per seed
    (--part pretrain probes Herlev cells the runs trained on instead: whether a run learns what it is shown)
    python benchmarks/ssl_learning_signal.py --train cpu_dinov2,cpu_koleo=cpu:loss.koleo_weight=0.1 \
        --seeds 0,1 --pools today,cells --probes herlev,chula --part pretrain --out DIR
        # the pool choice of the shipped encoder: each arm on each pool, probed on the PRETRAINING parts

Pools (``--pools``, each arm trained on each): ``fields`` (default; BCCD fields, Herlev cells, CRIC cells:
the pool of the tables in docs/benchmarks/pretraining_cpu.md), ``today`` (the shipped encoder's sources at
one scale: BCCD and chula_rbc12 fields, Herlev, CRIC; weights 0.2/0.2/0.3/0.3) and ``cells`` (today's with
the cells ``prepare --cells`` finds in the BCCD and chula_rbc12 pretraining fields as samples beside them,
each cell the square ``extract --mode cells`` reads; the cells take a quarter of the batches, the others
keep their proportions). Probes (``--probes``): ``herlev`` (Herlev 7-class) and ``chula`` (chula_rbc12 red
cells, 12 types, 80 px crops around the annotated cells, a seeded 1500 of the part).

Features are the teacher backbone's [CLS] token at the run's global crop size (ImageNet normalisation,
L2-normalised); the probe and folds are eval's (``cytofm probe``'s linear probe at the fixed C 0.5 of the
published study, a standardised logistic regression; ``make_splits``: 5-fold stratified CV repeated with 3
fold seeds), balanced accuracy (mean +- sd over the 15 folds). Random init and every run are probed on the
same folds in the same process, so their differences are paired (fold by fold). With one pretraining run per
preset the spread does not include training variation; with --seeds each arm is trained once per seed
and its margin gets an interval over runs x folds (cytofm.eval.intervals.seed_fold_interval) that does,
as does each arm's paired difference with the first arm. Finished runs and their probes (probe_<part>.json
in the run folder) are reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cytofm.eval.intervals import seed_fold_interval
from cytofm.ssl.backbone import MaskedViT, create_vit
from cytofm.ssl.checkpoint import CHECKPOINT, load_checkpoint
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.monitor import embed, load_labelled

SEEDS = (0, 1, 2)
PROBE_SETTINGS = {"c": 0.5, "max_iter": 3000, "tol": 1e-4}
"""eval's linear probe as the published study fitted it (a fixed C, no inner CV: the same scores as then)."""


def fold_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Balanced accuracy of eval's linear probe (the one ``cytofm probe`` fits) on each of eval's folds:
    5 stratified folds x len(SEEDS) fold seeds, the same folds for every encoder."""
    from cytofm.eval.metrics import classification_metrics
    from cytofm.eval.probes import LinearProbe
    from cytofm.eval.splits import make_splits

    classes, yi = np.unique(y, return_inverse=True)
    out = []
    for sp in make_splits(yi, 5, SEEDS, warn=lambda m: print(f"note: {m}")):
        probe = LinearProbe(**PROBE_SETTINGS)
        p = probe.proba(probe.fit(x[sp.train], yi[sp.train], sp.seed), x[sp.test], len(classes))
        out.append(classification_metrics(yi[sp.test], p, len(classes))["balanced_accuracy"])
    return np.asarray(out)


PROBES = {"herlev": ("Herlev 7-class", "label7", 100_000), "chula": ("chula_rbc12 red cells", "type", 1500)}
"""probe name -> (title, label column, most items probed: a seeded subsample above it)."""


def eval_manifest(shared: Path, out_dir: Path, part: str = "eval", probe: str = "herlev") -> Path:
    """The cells of one probe in one part of the split: ``eval`` (no run has seen them) or ``pretrain``
    (every run here trains on their fields or on them: a check that a run learns what it is shown, and the
    part a pool is chosen on, never a transfer number)."""
    from cytofm.data.provenance.split_files import load_split, write_part_manifest

    if probe == "herlev":
        return write_part_manifest(shared / "herlev", "herlev", part, out_dir / f"herlev_{part}.csv")
    from cytofm.data.annotations.point_crops import point_crops

    m, _ = point_crops(shared / "chula_rbc12" / "cells.csv", "type", 80, out_dir / f"chula_cells_{part}",
                       load_split("chula_rbc12"), part)
    return m


def compare(run: Path, manifest: Path, probe: str = "herlev") -> dict[str, np.ndarray | int]:
    """Fold scores of the run's teacher backbone and of the same architecture at random init (seed 0)."""
    ck = load_checkpoint(run / CHECKPOINT)
    cfg = PretrainConfig.model_validate(ck["config"])
    size = cfg.crops.global_size
    _, label, most = PROBES[probe]
    x, y = load_labelled(str(manifest), label, size, max_items=most)
    trained = create_vit(cfg.model, size, drop_path=0.0)
    trained.load_state_dict(ck["teacher_backbone"])
    torch.manual_seed(0)
    random_vit = create_vit(cfg.model, size, drop_path=0.0)
    cpu = torch.device("cpu")
    feats = {k: embed(MaskedViT(v), x, cpu, torch.bfloat16)
             for k, v in (("pretrained", trained), ("random", random_vit))}
    return {"pretrained": fold_scores(feats["pretrained"], y), "random": fold_scores(feats["random"], y),
            "iteration": int(ck["iteration"]), "n": len(y)}


def cached_compare(run: Path, manifest: Path, part: str,
                   probe: str = "herlev") -> dict[str, np.ndarray | int]:
    """:func:`compare`, kept in ``run/probe_[<probe>_]<part>.json`` (the probe of a finished run never
    changes)."""
    path = run / (f"probe_{part}.json" if probe == "herlev" else f"probe_{probe}_{part}.json")
    if path.exists():
        r = json.loads(path.read_text())
        return {k: np.asarray(v) if isinstance(v, list) else v for k, v in r.items()}
    r = compare(run, manifest, probe)
    path.write_text(json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}))
    return r


def parse_arm(spec: str) -> tuple[str, str, list[str]]:
    """``[NAME=]PRESET[:KEY=VALUE...]`` -> (name, preset, overrides)."""
    head, *overrides = spec.split(":")
    name, _, preset = head.rpartition("=")
    return name or preset, preset, overrides


def seed_study(arms: list[str], seeds: list[int], shared: Path, work: Path, manifests: dict[str, Path],
               part: str, overrides: list[str], pools: tuple[str, ...] = ("fields",)) -> None:
    """Train every arm on every pool once per seed (seed-major, so a study cut short stays balanced), probe,
    summarise: each run's margin over random init, each arm against the first arm, and, with several pools,
    each pool against the first pool for the same arm."""
    scores: dict[str, dict[str, dict[int, dict]]] = {}  # probe -> arm[@pool] -> seed -> fold scores
    for seed in seeds:
        for pool in pools:
            for spec in arms:
                name, preset, extra = parse_arm(spec)
                label = name if pools == ("fields",) else f"{name}@{pool}"
                t0 = time.perf_counter()
                run = pretrain(preset, shared, work, [*overrides, *extra, f"train.seed={seed}"],
                               f"{label.replace('@', '_')}_seed{seed}", pool)
                for probe, m in manifests.items():
                    r = cached_compare(run, m, part, probe)
                    scores.setdefault(probe, {}).setdefault(label, {})[seed] = r
                    print(f"{label} seed {seed} {probe}: {time.perf_counter() - t0:.0f} s; "
                          f"{report(label, r)}", flush=True)
    names = [parse_arm(a)[0] for a in arms]
    labels = list(next(iter(scores.values())))
    pairs = [(lab, labels[0]) for lab in labels[1:] if len(pools) == 1]
    pairs += [(f"{n}@{p}", f"{n}@{pools[0]}") for p in pools[1:] for n in names]
    pairs += [(f"{n}@{p}", f"{names[0]}@{p}") for p in pools for n in names[1:]] if len(pools) > 1 else []
    for probe, by_label in scores.items():
        summarise(probe, by_label, pairs, part, len(seeds))


def summarise(probe: str, by_label: dict[str, dict[int, dict]], pairs: list[tuple[str, str]], part: str,
              n_seeds: int) -> None:
    """Margins over random init and paired differences, 95% intervals over runs x folds."""
    n = next(iter(next(iter(by_label.values())).values()))["n"]
    where = ("evaluation part" if part == "eval"
             else "PRETRAINING part (the runs trained on these fields or cells)")
    print(f"\n{PROBES[probe][0]}, {where} ({n} cells), linear probe, 5 folds x {len(SEEDS)} fold seeds, "
          f"{n_seeds} pretraining seeds per arm; 95% intervals over runs x folds:")
    ratio = 1 / 4  # 5-fold: n_test / n_train
    for name, by_seed in by_label.items():
        diffs = np.stack([r["pretrained"] - r["random"] for r in by_seed.values()])
        iv = seed_fold_interval(diffs, ratio)
        runs = ", ".join(f"{d.mean():+.3f}" for d in diffs)
        print(f"{name:18s} - random init: {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] p={iv.p:.3f} "
              f"(runs: {runs})")
    for a, b in pairs:
        common = [s for s in by_label.get(a, {}) if s in by_label.get(b, {})]
        if not common:
            continue
        diffs = np.stack([by_label[a][s]["pretrained"] - by_label[b][s]["pretrained"] for s in common])
        iv = seed_fold_interval(diffs, ratio)
        print(f"{a:18s} - {b}: {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] p={iv.p:.3f} "
              f"over {len(common)} seed pairs")


POOLS = ("fields", "today", "cells")


def pool_sources(pool: str, shared: Path, work: Path) -> tuple[list[str], list[str]]:
    """The --data sources of a pool (prepared once in ``work``, from the pretraining parts only) and the
    config overrides that go with it (cells, weights)."""
    from cytofm.config.loader import build_config
    from cytofm.data.prepare.config import PrepareConfig
    from cytofm.data.prepare.run import run_prepare
    from cytofm.data.provenance.split_files import SMEAR_MPP, write_part_manifest

    quiet = ["output.qa_thumbnails=0"]

    def prepared(ds: str, name: str, preset: str, extra: list[str] = ()) -> str:
        if not (work / name).exists():  # prepared aside and renamed, so a cut-short prepare is redone
            m = write_part_manifest(shared / ds, ds, "pretrain", work / f"{ds}_pretrain.csv")
            cfg = build_config(PrepareConfig, "prepare", preset, [*quiet, *extra])
            partial = work / f"{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            run_prepare([str(m)], partial, cfg, log=lambda s: None)
            partial.rename(work / name)
        return str(work / name)

    herlev = str(write_part_manifest(shared / "herlev", "herlev", "pretrain", work / "herlev_pretrain.csv"))
    bccd, cric = prepared("bccd", "bccd", "smear_fields"), prepared("cric", "cric", "cells")
    if pool == "fields":
        return [bccd, herlev, cric], []
    chula = prepared("chula_rbc12", "chula_rbc12", "smear_fields")
    today = [bccd, chula, herlev, cric]
    if pool == "today":
        return today, ["data.weights=[0.2,0.2,0.3,0.3]"]
    cells = [prepared(ds, f"{ds}_cells", "smear_cells", [f"resolution.mpp={mpp}"])
             for ds, mpp in SMEAR_MPP.items()]
    return today + cells, ["data.weights=[0.15,0.15,0.225,0.225,0.125,0.125]",
                           "data.cells=[false,false,false,false,true,true]"]


def pretrain(preset: str, shared: Path, work: Path, overrides: list[str] = (),
             name: str | None = None, pool: str = "fields") -> Path:
    """Train ``preset`` on a pool of the pretraining parts (prepared once in ``work``) into
    ``work/run_<name>`` (default: the preset's name); a finished run there is kept as it is. Returns the
    run folder."""
    from cytofm.config.loader import build_config
    from cytofm.ssl.trainer import SSLTrainer

    data, pool_overrides = pool_sources(pool, shared, work)
    cfg = build_config(PretrainConfig, "pretrain", preset, [*pool_overrides, *overrides])
    out = work / f"run_{name or preset}"
    SSLTrainer(cfg, data, out, log=print).run()
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
                    help="part to probe: eval (unseen cells; default) or pretrain "
                         "(cells the runs trained on)")
    ap.add_argument("--pools", default="fields",
                    help=f"comma-separated pools to train each arm on, of {POOLS}")
    ap.add_argument("--probes", default="herlev", help=f"comma-separated probes, of {tuple(PROBES)}")
    a = ap.parse_args()
    shared = a.shared or a.shared_pos or Path(os.environ.get(
        "CYTOFM_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    work = a.out or Path(tempfile.mkdtemp(prefix="learning_signal_"))
    work.mkdir(parents=True, exist_ok=True)
    pools, probes = tuple(a.pools.split(",")), a.probes.split(",")
    bad = [p for p in pools if p not in POOLS] + [p for p in probes if p not in PROBES]
    if bad:
        ap.error(f"unknown pool or probe {bad[0]!r}: pools {POOLS}, probes {tuple(PROBES)}")
    manifests = {p: eval_manifest(shared, work, a.part, p) for p in probes}
    manifest = manifests[probes[0]]
    where = "evaluation part" if a.part == "eval" else "PRETRAINING part (cells the runs were trained on)"
    if a.train and a.seeds:
        seed_study(a.train.split(","), [int(x) for x in a.seeds.split(",")], shared, work, manifests, a.part,
                   a.overrides, pools)
        return
    if a.train:
        results = {}
        for preset in a.train.split(","):
            t0 = time.perf_counter()
            run = pretrain(preset, shared, work, a.overrides)
            results[preset] = compare(run, manifest, probes[0])
            print(f"{preset}: pretrained in {time.perf_counter() - t0:.0f} s")
        print(f"\n{PROBES[probes[0]][0]}, {where} ({results[preset]['n']} cells), linear probe, "
              f"5 folds x {len(SEEDS)} seeds:")
        for preset, r in results.items():
            print(report(preset, r))
        names = list(results)
        for other in names[1:]:
            d = results[other]["pretrained"] - results[names[0]]["pretrained"]
            print(f"{other} - {names[0]}: {d.mean():+.3f} +- {d.std():.3f} over the same folds "
                  "(one run each)")
        return
    r = compare(a.run, manifest, probes[0])
    print(f"{PROBES[probes[0]][0]}, {where} ({r['n']} cells):")
    print(report(a.run.name, r))


if __name__ == "__main__":
    main()
