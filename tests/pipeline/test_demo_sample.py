"""The sample the demo ships: only evaluation-part images of the shipped split (the shipped encoder saw none),
a demo-pretraining part disjoint from what is evaluated, licences kept, and a headline task that 5-fold
cross-validation by field can support."""

import csv
import hashlib
from pathlib import Path

import pytest

from cytofm.config.loader import build_config
from cytofm.data.provenance.split_files import load_split
from cytofm.eval.config import BenchmarkConfig
from cytofm.pipeline.demo import demo_data_dir

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _rows(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def test_every_demo_image_is_from_the_evaluation_part_and_the_parts_are_disjoint():
    root = demo_data_dir()
    for name in ("bccd", "chula_rbc12"):
        split = load_split(name)
        d = root / name
        pre = {r["image"] for r in _rows(d / "pretrain.csv")}
        evaluated = ({r["image"] for r in _rows(d / "manifest.csv")} if name == "bccd"
                     else {r["image"] for r in _rows(d / "cells.csv")})
        on_disk = {f"images/{p.name}" for p in (d / "images").iterdir()}
        assert pre and evaluated and not pre & evaluated
        assert on_disk == pre | evaluated  # nothing shipped that is not used
        assert {split[i] for i in on_disk} == {"eval"}
        assert "MIT" in (d / "LICENSE").read_text() and "licence" in (d / "README.md").read_text()


def test_headline_classes_are_on_enough_fields_for_five_folds():
    cfg = build_config(BenchmarkConfig, "benchmark", "demo")
    task = next(t for t in cfg.tasks if t.points)
    fields: dict[str, set] = {}
    for r in _rows(demo_data_dir() / task.points):
        if r[task.label] not in task.exclude:
            fields.setdefault(r[task.label], set()).add(r["image"])
    assert len(fields) >= 8 and min(len(v) for v in fields.values()) >= task.folds
    assert sum(len(v) for v in fields.values()) >= 100


def test_demo_files_are_byte_identical_to_the_shared_sources():
    if not (SHARED / "bccd").is_dir() or not (SHARED / "chula_rbc12").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    root = demo_data_dir()
    for name in ("bccd", "chula_rbc12"):
        for p in sorted((root / name / "images").iterdir())[:10]:
            src = SHARED / name / "images" / p.name
            assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
