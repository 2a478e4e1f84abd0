"""A benchmark re-run reuses finished evaluations (same numbers, nothing re-fitted) and re-evaluates when
anything they depend on changes; a task whose labels cannot be split is skipped, the others still count."""

import csv
import io

import numpy as np
from PIL import Image

from cytofm.config.loader import build_config
from cytofm.eval.config import BenchmarkConfig
from cytofm.pipeline.benchmark import run_benchmark
from cytofm.utils.io import write_csv


def _data(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = ["a", "b"][i % 2]
        colour = np.array((215, 150, 170) if label == "a" else (120, 160, 190))
        tex = np.kron(rng.uniform(0.6, 1.0, (5, 5)), np.ones((8, 8)))[..., None]
        Image.fromarray((tex * colour).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": label, "lonely": "x" if i else "y"})
    write_csv(tmp_path / "manifest.csv", rows)


def _cfg(seeds):
    task = {"data": "manifest.csv", "mode": "image", "eval": "probe", "methods": ["linear", "knn"],
            "folds": 2, "seeds": seeds}
    return build_config(BenchmarkConfig, values={
        "encoders": ["handcrafted", "random:vit_tiny_patch16_224"], "skip_missing": True,
        "tasks": [{**task, "name": "colour", "label": "label"}, {**task, "name": "bad", "label": "lonely"}]})


def test_rerun_reuses_evaluation_and_changes_reevaluate(tmp_path, monkeypatch):
    _data(tmp_path)
    out = tmp_path / "o"
    logs: list[str] = []
    run_benchmark(_cfg([0, 1]), tmp_path, out, log=logs.append)
    first = (out / "results.csv").read_text(), (out / "comparisons.csv").read_text()
    # the task whose class 'y' has one item is skipped with its reason; the other task is complete
    assert any("task skipped: [bad]" in m and "'y'" in m for m in logs)
    assert "skipped task bad" in (out / "results.md").read_text()
    assert (out / "summary.md").read_text().startswith("## Summary\n\n- colour (linear, 24 items")

    def refit(*a, **k):
        raise AssertionError("a finished evaluation was re-run")

    monkeypatch.setattr("cytofm.eval.evaluate_store.evaluate_probes", refit)
    logs.clear()
    run_benchmark(_cfg([0, 1]), tmp_path, out, log=logs.append)
    assert sum("evaluation unchanged, reused" in m for m in logs) == 2
    assert ((out / "results.csv").read_text(), (out / "comparisons.csv").read_text()) == first
    monkeypatch.undo()

    logs.clear()
    run_benchmark(_cfg([0, 1, 2]), tmp_path, out, log=logs.append)  # other seeds: other folds
    assert not any("reused" in m for m in logs)
    # 2 folds x 2, then x 3 seeds
    assert _splits(first[0]) == {4} and _splits((out / "results.csv").read_text()) == {6}

    # an image changed in place (same name, so the store's manifest is the same): its features change, and
    # no evaluation that used it is reused
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "3.png")
    logs.clear()
    run_benchmark(_cfg([0, 1, 2]), tmp_path, out, log=logs.append)
    assert not any("reused" in m for m in logs)


def _splits(text: str) -> set[int]:
    return {int(r["n_splits"]) for r in csv.DictReader(io.StringIO(text))}


def test_a_task_that_cannot_run_stops_the_benchmark_unless_told_to_keep_going(tmp_path):
    import pytest

    from cytofm.eval.splits import ProtocolError

    _data(tmp_path)
    cfg = _cfg([0]).model_copy(update={"encoders": ["handcrafted"], "skip_missing": False})
    with pytest.raises(ProtocolError, match="task bad cannot be evaluated: .*'y'.*--keep-going"):
        run_benchmark(cfg, tmp_path, tmp_path / "o", log=lambda m: None)
    rows = run_benchmark(cfg.model_copy(update={"skip_missing": True}), tmp_path, tmp_path / "o",
                         log=lambda m: None)
    assert {r["task"] for r in rows} == {"colour"}
    assert "- skipped task bad: " in (tmp_path / "o" / "summary.md").read_text()
