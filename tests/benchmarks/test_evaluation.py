"""The benchmark scripts evaluate with eval's probes, folds and metrics, never with their own: a number in
docs/benchmarks/ then means what `cytofm probe` and `cytofm benchmark` mean by it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
OWN_EVALUATION = ("LogisticRegression", "KNeighborsClassifier", "StratifiedKFold", "GroupKFold",
                  "StratifiedGroupKFold", "KFold(", "cross_val_score", "balanced_accuracy_score",
                  "GridSearchCV")


def test_no_benchmark_script_fits_its_own_probe_or_folds():
    found = [f"{p.name}: {name}" for p in sorted(BENCHMARKS.glob("*.py"))
             for name in OWN_EVALUATION if re.search(re.escape(name), p.read_text())]
    assert not found, f"evaluate through cytofm.eval (probes, splits, metrics) instead: {found}"


def test_the_learning_signal_probe_is_evals_and_scores_as_the_published_study():
    """eval's linear probe at the study's fixed C on eval's folds gives, fold for fold, the scores of the
    script's former own loop (5 stratified folds per seed, standardised logistic regression, C 0.5): the
    numbers in docs/benchmarks/pretraining_cpu.md stay reproducible by the script as it is now."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from ssl_learning_signal import SEEDS, fold_scores
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    y = np.array(["a", "b", "c"])[np.arange(90) % 3]
    x = rng.normal(size=(90, 12)).astype(np.float32)
    x[:, :3] += 1.0 * (y[:, None] == np.array(["a", "b", "c"])[None])
    published = []
    for seed in SEEDS:
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5)).fit(x[tr], y[tr])
            published.append(balanced_accuracy_score(y[te], clf.predict(x[te])))
    scores = fold_scores(x, y)
    assert len(scores) == 5 * len(SEEDS) and np.allclose(scores, published, atol=1e-12)
    assert 0.5 < scores.mean() < 0.95  # informative but not separable: the folds differ, so the check bites
