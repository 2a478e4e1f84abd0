"""The demo sizes itself to the machine: the estimate by hand, full on a fast machine, fewer items (never
fewer tasks or encoders) on a slow one, the minimum with a warning where even that does not fit."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from cytofm.pipeline import demo_plan as dp
from cytofm.pipeline.demo_plan import Machine, estimate, plan_demo, stratified_subset


def _machine(slow: float, step_s: float) -> Machine:
    return Machine("fp32", dp.REFERENCE_VIT_S * slow, step_s, dp.REFERENCE_CPU_S * slow ** 0.5, 2)


def test_estimate_by_hand():
    m = Machine("bf16", 0.01, 0.5, 2 * dp.REFERENCE_CPU_S, 2)  # scikit-learn twice as slow as the reference
    e = estimate(m, 100, 763, 50)
    assert e["pretraining"] == pytest.approx(50.0)
    assert e["red cells"] == pytest.approx(763 * (2.5 * 0.01 + 2 * (0.040 + 0.073)))
    assert e["BCCD fields"] == pytest.approx(50 * (85 * 0.01 + 2 * (0.48 + 0.94)))
    assert e["attention maps"] == pytest.approx(6 * dp.ATTENTION_MAPS_S * 0.01 * 89)
    assert e["UMAP"] == pytest.approx(2 * dp.FIXED_S["UMAP"])


def test_reference_machine_estimate_matches_its_measured_demo():
    """On the reference machine the full demo took 351 s before it applied a saved model to new fields and
    triaged the new chula fields (30 s there)."""
    m = Machine("bf16", dp.REFERENCE_VIT_S, 0.72, dp.REFERENCE_CPU_S, 2)
    e = estimate(m, 120, 763, 50)
    assert sum(e.values()) - e["predict (new fields)"] - e["triage"] == pytest.approx(351, rel=0.05)
    assert e["triage"] == 30.0
    # 20 held-out fields through one encoder, one encoder's ABMIL folds
    assert e["predict (new fields)"] == pytest.approx(20 * (34 * dp.REFERENCE_VIT_S + 0.12 + 0.24))
    assert dp.held_out_fields(20) == 8 and dp.held_out_fields(50) == 20 and dp.held_out_fields(1) == 5


def test_fast_machine_runs_everything():
    p = plan_demo(_machine(0.7, 0.8))
    assert (p.iterations, p.cells, p.fields, p.maps) == (120, 763, 50, 6) and not p.reduced
    assert p.total_s <= dp.BUDGET_S


def test_slow_machine_gets_fewer_items_within_budget():
    p = plan_demo(_machine(5.0, 2.5))
    assert p.reduced and p.total_s <= dp.BUDGET_S
    assert (dp.MIN_CELLS <= p.cells < 763 and dp.MIN_FIELDS <= p.fields < 50
            and p.iterations >= dp.MIN_ITERATIONS)
    assert any("fewer items" in ln for ln in p.lines())


def test_hopeless_machine_runs_the_minimum_and_says_so():
    p = plan_demo(_machine(40.0, 20.0))
    assert ((p.iterations, p.cells, p.fields, p.maps)
            == (dp.MIN_ITERATIONS, dp.MIN_CELLS, dp.MIN_FIELDS, dp.MIN_MAPS))
    assert any(ln.startswith("warning: even the smallest useful demo needs about") for ln in p.lines())


def test_full_ignores_the_budget():
    p = plan_demo(_machine(40.0, 20.0), full=True)
    assert (p.iterations, p.cells, p.fields) == (120, 763, 50)


def test_stratified_subset_keeps_every_class_and_is_seeded():
    rows = [{"k": "a", "i": i} for i in range(80)] + [{"k": "b", "i": i} for i in range(15)] + [
        {"k": "c", "i": i} for i in range(3)]
    sub = stratified_subset(rows, 49, "k")
    counts = {c: sum(r["k"] == c for r in sub) for c in "abc"}
    assert counts == {"a": 40, "b": 7, "c": 3}  # half of each; a class with fewer than 5 kept whole
    assert sub == stratified_subset(rows, 49, "k") and sub == sorted(sub, key=rows.index)


def test_sized_tasks_point_at_absolute_subsets_whatever_the_current_folder(tmp_path, monkeypatch):
    """`cytofm demo --out cytofm-demo` (relative) once made the benchmark look for the subset inside the
    sample."""
    from cytofm.config.loader import build_config
    from cytofm.eval.config import BenchmarkConfig
    from cytofm.pipeline.demo import _sized_tasks, demo_data_dir

    monkeypatch.chdir(tmp_path)
    plan = plan_demo(_machine(5.0, 2.5))
    tasks = _sized_tasks(build_config(BenchmarkConfig, "benchmark", "demo").tasks, demo_data_dir(),
                         Path("plan"), plan)
    cells, fields = tasks
    for p in (cells.data, cells.points, fields.data):
        assert Path(p).is_absolute() and Path(p).is_file(), p
    with open(fields.data) as f:
        kept = list(csv.DictReader(f))
    with open(demo_data_dir() / "bccd" / "manifest.csv") as f:
        every = list(csv.DictReader(f))
    # the planned number of fields, each type kept in proportion but with at least five (five folds)
    assert len(kept) == len(dp.stratified_subset(every, plan.fields, "wbc_type")) <= plan.fields + 4
    assert min(Counter(r["wbc_type"] for r in kept).values()) >= 5


def test_replan_after_pretraining_grows_or_shrinks_the_items_to_the_time_left():
    from cytofm.pipeline.demo_plan import replan_items

    busy = plan_demo(_machine(5.0, 2.5))  # measured while the machine was busy
    calm = replan_items(busy, _machine(0.7, 0.8), 400.0, 90.0)
    assert (calm.cells, calm.fields, calm.maps, calm.iterations) == (763, 50, 6, busy.iterations)
    tight = replan_items(busy, _machine(5.0, 2.5), 60.0, 90.0)
    assert (tight.cells, tight.fields) == (dp.MIN_CELLS, dp.MIN_FIELDS)
    mid = replan_items(busy, _machine(5.0, 2.5), 600.0, 90.0)  # 362 s at the minimum, 822 s in full
    assert (dp.MIN_CELLS < mid.cells < 763
            and sum(v for k, v in mid.estimate.items() if k != "pretraining") <= 600)
