"""Frozen-feature extraction into an h5 feature store (TRIDENT/CLAM layout)."""
