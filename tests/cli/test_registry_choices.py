"""Command-line choices and config validation come from the registries, so they cannot drift apart: every
registered name is offered and accepted, nothing else is."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.eval.config import MilConfig, TaskConfig
from cytofm.mil.registry import MIL_MODELS
from cytofm.models.zoo import ENCODER_FAMILIES
from cytofm.ssl.config import PretrainConfig
from cytofm.ssl.method_registry import METHODS, method_class
from cytofm.utils.registry import Registry, RegistryError


def test_the_registry_refuses_a_taken_name_and_lists_its_entries():
    r = Registry("widget")
    r.add("a", "math:pi", "the first")
    r.add("bb", "os.path:sep", "the second", colour="blue")
    with pytest.raises(RegistryError, match="widget 'a' is registered twice"):
        r.add("a", "math:e", "again")
    with pytest.raises(RegistryError, match="a one-line description"):
        r.add("c", "math:e", " ")
    with pytest.raises(RegistryError, match="must be 'package.module:attr'"):
        r.add("d", "math.e", "no colon")
    assert r.names() == ("a", "bb") and r.get("bb") == os.path.sep and r.entry("bb").colour == "blue"
    assert r.describe() == ["a   the first", "bb  the second"]
    with pytest.raises(RegistryError, match=r"unknown widget 'b' \(did you mean 'bb'\?\); available: a, bb"):
        r.get("b")


def test_every_registry_of_the_package_has_its_entries():
    assert MIL_MODELS.names() == ("abmil", "transmil")
    assert set(METHODS.names()) == {"ibot", "dinov2"}
    assert {"random", "handcrafted", "timm", "cytofm", "uni"} <= set(ENCODER_FAMILIES.names())


def test_mil_choices_and_config_validation_are_the_registry():
    from cytofm.cli.evaluate import MilModel

    assert tuple(m.value for m in MilModel) == MIL_MODELS.names()
    for name in MIL_MODELS:
        assert MilConfig(model=name).model == name
        assert TaskConfig(name="t", data="d", label="y", eval="mil", model=name).model == name
    for schema in (MilConfig, lambda model: TaskConfig(name="t", data="d", label="y", model=model)):
        with pytest.raises(ValueError, match="unknown MIL model 'clam'; available: abmil, transmil"):
            schema(model="clam")
    out = CliRunner().invoke(app, ["mil", "--help"], terminal_width=200).output
    for e in MIL_MODELS.entries():
        assert e.name in out


def test_ssl_method_validation_is_the_registry():
    for name in METHODS:
        assert method_class(name).name == name
        kw = {"head": {"separate": True}} if name == "dinov2" else {}
        assert PretrainConfig(method=name, **kw).method == name
    with pytest.raises(ValueError, match="unknown SSL method 'ibt' \\(did you mean 'ibot'\\?\\)"):
        PretrainConfig(method="ibt")


def test_doctor_lists_every_registered_method_and_model():
    from cytofm.cli.doctor import collect

    items = {item for item, _, _ in collect()}
    assert {f"SSL method {n}" for n in METHODS} | {f"MIL model {n}" for n in MIL_MODELS} <= items
