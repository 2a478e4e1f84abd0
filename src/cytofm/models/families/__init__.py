"""Encoder families; each module registers its entries in ``cytofm.models.registry`` on import."""
