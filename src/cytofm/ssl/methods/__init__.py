"""Pretraining methods behind one interface (:class:`~cytofm.ssl.methods.base.SSLMethod`): ``ibot``, ``dinov2``.

A new method is one module here: a subclass of ``SSLMethod`` decorated with ``register_method``, imported
below, and a ``Literal`` value in ``PretrainConfig.method``.
"""

from cytofm.ssl.methods import dinov2, ibot  # noqa: F401 - registers the shipped methods
from cytofm.ssl.methods.base import METHODS, SSLMethod, Views, build_method, register_method

__all__ = ["METHODS", "SSLMethod", "Views", "build_method", "register_method"]
