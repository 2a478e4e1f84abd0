"""The probes on frozen features, by name (``cytofm probe --methods``, ``methods:`` of a probe config or
a benchmark task). Each entry is a :class:`cytofm.eval.probes.Probe` subclass, imported when first used, so
the command line and config validation list the names without importing scikit-learn. ``saved``: the probe
is written for ``cytofm predict`` (each fold x seed model, and the refit one); few-shot, an average of ten
draws of a few examples, is evaluated, not applied."""

from __future__ import annotations

import difflib

from cytofm.utils.registry import Registry

PROBES: Registry[type] = Registry("probe method")
PROBES.add("linear", "cytofm.eval.probes:LinearProbe",
           "logistic regression on standardised features, its L2 strength chosen by an inner CV", saved=True)
PROBES.add("knn", "cytofm.eval.probes:KnnProbe", "cosine k nearest neighbours, distance-weighted (--knn-k)",
           saved=True)
PROBES.add("fewshot", "cytofm.eval.probes:FewShotProbe",
           "logistic regressions on --shots examples per class, the mean of ten draws (not saved)",
           saved=False)


def make_probe(name: str, knn_k: int = 20, shots: int = 5):
    """The probe registered as ``name`` with the run's settings; its ``name`` must be the registered one."""
    probe = PROBES.get(name)(knn_k=knn_k, shots=shots)
    if probe.name != name:
        raise TypeError(f"{PROBES.entry(name).target} is registered as probe '{name}' "
                        f"but names itself {probe.name!r}")
    return probe


def known_probes(names: list[str]) -> list[str]:
    """``names`` if every one is registered (a config validator), else one refusal naming them all."""
    bad = [m for m in names if m not in PROBES]
    if bad:
        close = difflib.get_close_matches(bad[0], list(PROBES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown probe method(s) {', '.join(bad)}{hint}; valid: {', '.join(PROBES)}")
    return names
