"""Encoder families, one module per provider; their entries are listed in ``cytofm.models.registry``."""
