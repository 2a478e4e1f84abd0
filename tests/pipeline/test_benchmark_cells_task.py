"""A cells task none of whose labelled points matched a detected cell is one task that cannot be evaluated:
with --keep-going the benchmark goes on with the others and lists it as skipped; without, it stops with one
line naming the task and the fix (finished extractions kept)."""

import numpy as np
import pytest
from PIL import Image

from cytofm.config.loader import build_config
from cytofm.eval.cell_labels import CellPointsError
from cytofm.eval.config import BenchmarkConfig
from cytofm.pipeline import benchmark
from cytofm.utils.io import write_csv

NO_MATCH = "points.csv: no labelled cell matched a detected cell of store"


def _data(root):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        label = ["a", "b"][i % 2]
        colour = np.array((215, 150, 170) if label == "a" else (120, 160, 190))
        tex = np.kron(rng.uniform(0.6, 1.0, (5, 5)), np.ones((8, 8)))[..., None]
        Image.fromarray((tex * colour).astype(np.uint8)).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": label})
    write_csv(root / "manifest.csv", rows)


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """Two tasks on one set of images; the 'cells' one fails in its cell matching, as a cells task whose
    points match no detected cell does (``_cell_items`` -> ``label_detected_cells``)."""
    _data(tmp_path)
    real = benchmark._extract_all

    def extract(cfg, task, *a, **k):
        if task.name == "cells":
            raise CellPointsError(NO_MATCH)
        return real(cfg, task, *a, **k)

    monkeypatch.setattr(benchmark, "_extract_all", extract)
    task = {"data": "manifest.csv", "mode": "image", "eval": "probe", "methods": ["linear"],
            "folds": 2, "seeds": [0], "label": "label"}
    return build_config(BenchmarkConfig, values={
        "encoders": ["handcrafted"], "skip_missing": False,
        "tasks": [{**task, "name": "cells"}, {**task, "name": "colour"}]})


def test_keep_going_goes_on_past_a_cells_task_without_matched_points(cfg, tmp_path):
    rows = benchmark.run_benchmark(cfg.model_copy(update={"skip_missing": True}), tmp_path, tmp_path / "o",
                                   log=lambda m: None)
    assert {r["task"] for r in rows} == {"colour"}
    assert f"- skipped task cells: [cells] {NO_MATCH}" in (tmp_path / "o" / "summary.md").read_text()


def test_without_keep_going_it_stops_with_one_line(cfg, tmp_path):
    with pytest.raises(CellPointsError) as e:
        benchmark.run_benchmark(cfg, tmp_path, tmp_path / "o", log=lambda m: None)
    assert str(e.value) == (f"task cells cannot be evaluated: [cells] {NO_MATCH}; finished extractions are "
                            "kept; fix it, or give --keep-going to evaluate the other tasks")
