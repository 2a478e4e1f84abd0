"""Fixtures of the pretraining tests."""

import pytest

from tests.helpers import smear_folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six small synthetic smear fields (a folder of PNGs), made once per test module."""
    return smear_folder(tmp_path_factory.mktemp("imgs"))
