"""Evaluation of frozen features: protocols, metrics with confidence intervals, probes."""
