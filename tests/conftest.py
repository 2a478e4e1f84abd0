"""Fixtures for every test folder. Being in the ``tests`` package, this file also puts the repository root
on sys.path when pytest loads it, so test modules can import ``tests.helpers`` (the shared plain helpers).
No test module imports from a conftest or from another test module (tests/test_layers.py checks)."""
