"""Slide models over the cells: the cases of a triage as two feature stores, so that a slide-level model is
trained and cross-validated by ``cytofm probe`` and ``cytofm mil`` themselves (the same folds, statistics and
operating point as every other model), then applied by ``cytofm triage --slide-model``:

- ``slides/counts``: one instance per case, its shares by predicted class, the abnormal share, the burden
  and its ten highest abnormal probabilities (a plain model over the counts: ``cytofm probe``);
- ``slides/top_cells``: the case's ``top_k`` most abnormal cells' encoder features as the instances (top-K
  multiple-instance learning over cell features: ``cytofm mil``).

Each store's identity names the cell classifier it was built with, so a slide model is applied only to
cases summarised by the same cell classifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cytofm.eval.cell_burden import case_summary
from cytofm.features.store import STORE_FILE, claim_store, write_item
from cytofm.pipeline.triage_config import TriageError
from cytofm.utils.io import write_csv

KINDS = ("counts", "top_cells")
SKIP_COLUMNS = {"h5", "n_instances"}


def cell_model_hash(model_dir: Path) -> str:
    """What identifies a cell classifier: its model.json's bytes (they name every member and its data)."""
    return hashlib.sha256((Path(model_dir) / "model.json").read_bytes()).hexdigest()[:16]


def count_features(agg, classes: list[str], abnormal: list[int]) -> np.ndarray:
    """A case's one instance in ``slides/counts``: its shares by class, abnormal share, ten highest abnormal
    probabilities (``case_summary``'s, without the raw counts, which grow with the case) and its score."""
    s = case_summary(agg, classes, abnormal)
    return np.array([v for k, v in s.items() if not k.startswith("n_")] + [agg.score], np.float32)


def _claim(root: Path, kind: str, dim: int, model_hash: str, spec: str) -> None:
    import shutil

    if (root / STORE_FILE).is_file():  # a re-run: rebuilt from this run's cases
        shutil.rmtree(root)
    claim_store(root, {"encoder": f"triage-{kind}", "weights_hash": model_hash, "embed_dim": dim,
                       "input_size": 0, "mode": "tiles", "tta": False},
                {"encoder_spec": f"triage-{kind}:{spec}", "unit": "case"})
    (root / "features").mkdir(parents=True, exist_ok=True)


def write_slide_stores(out: Path, cases: list, pred, classes: list[str], abnormal: list[int], top_k: int,
                       model_dir: Path) -> dict[str, Path]:
    """``out/slides/counts`` and ``out/slides/top_cells`` over the analysed cases, each row carrying the
    input's own columns (labels among them)."""
    rows = {r["id"]: r for r in pred.rows}
    done = [c for c in cases if c.agg is not None and c.id in rows]
    if not done:
        return {}
    h = cell_model_hash(model_dir)
    stores = {k: out / "slides" / k for k in KINDS}
    counts = {c.id: count_features(c.agg, classes, abnormal) for c in done}
    _claim(stores["counts"], "counts", len(counts[done[0].id]), h, str(model_dir))
    _claim(stores["top_cells"], "top_cells", int(pred.cells[0]["features"].shape[-1]), h, str(model_dir))
    table = {k: [] for k in KINDS}
    for c in done:
        write_item(stores["counts"] / "features" / f"{c.id}.h5", counts[c.id][None], np.zeros((1, 2)),
                   {"case": c.id})
        top = c.agg.order[:top_k]
        f = np.stack([pred.cells[c.cells[j]]["features"] for j in top])
        xy = np.array([[pred.cells[c.cells[j]]["x"], pred.cells[c.cells[j]]["y"]] for j in top])
        write_item(stores["top_cells"] / "features" / f"{c.id}.h5", f, xy, {"case": c.id})
        own = {k: v for k, v in rows[c.id].items() if k not in SKIP_COLUMNS}
        table["counts"].append({**own, "h5": f"features/{c.id}.h5", "n_instances": 1})
        table["top_cells"].append({**own, "h5": f"features/{c.id}.h5", "n_instances": len(top)})
    for k in KINDS:
        write_csv(stores[k] / "manifest.csv", table[k])
    return stores


def apply_slide_model(run: Path, stores: dict[str, Path], out: Path,
                      log=print) -> tuple[dict, float | None, str]:
    """A ``probe`` or ``mil`` run trained on one of the slide stores, applied to this triage's: per case the
    mean probability of its positive class over the ensemble and the spread, the run's operating point
    (chosen out of fold when it was trained), and the positive class."""
    from cytofm.eval.saved_model import SavedModel
    from cytofm.pipeline.predict import run_predict
    from cytofm.utils.io import read_csv

    model = SavedModel.read(Path(run))
    kind = next((k for k in KINDS if str(model.encoder_spec).startswith(f"triage-{k}:")), None)
    if kind is None or kind not in stores:
        raise TriageError(f"--slide-model {run}: not a model trained on a triage's slides/counts or "
                          f"slides/top_cells store (its features: {model.encoder_spec or 'unrecorded'})")
    run_predict(Path(run), stores[kind], out / "slide_model", heatmaps=0, log=log)
    op = model.operating_point or {}
    pos = op.get("positive_class") or model.classes[-1]
    scores = {r["id"]: (float(r[f"p_{pos}"]), float(r[f"sd_{pos}"]))
              for r in read_csv(out / "slide_model" / "predictions.csv")}
    return scores, op.get("threshold"), pos
