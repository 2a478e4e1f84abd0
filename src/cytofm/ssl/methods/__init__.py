"""Pretraining methods behind one interface (:class:`~cytofm.ssl.methods.base.SSLMethod`): ``ibot``,
``dinov2``.

A new method is one module here, a subclass of ``SSLMethod`` whose ``name`` is its registered name, and one
line in :mod:`cytofm.ssl.method_registry` (its name, ``module:Class``, a description, the name the log
writes and its config check), which ``PretrainConfig.method`` is validated against.
"""

from cytofm.ssl.method_registry import METHODS
from cytofm.ssl.methods.base import SSLMethod, Views, build_method

__all__ = ["METHODS", "SSLMethod", "Views", "build_method"]
