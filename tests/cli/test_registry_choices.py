"""Command-line choices and config validation come from the registries, so they cannot drift apart: every
registered name is offered and accepted, nothing else is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytofm.cli.main import app
from cytofm.cli.plugins import PLUG_POINTS
from cytofm.data.cells.registry import CELL_DETECTORS
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


def _option(command: str, option: str):
    """The click parameter ``option`` of ``cytofm command`` (built as ``cytofm command --help`` builds it)."""
    import click
    import typer

    group = typer.main.get_command(app)
    cmd = group.get_command(click.Context(group), command)
    assert cmd is not None, f"no command {command}"
    found = [p for p in cmd.params if option in p.opts]
    assert found, f"cytofm {command} has no option {option}"
    return found[0]


def _offers(command: str, option: str) -> tuple[str, tuple[str, ...]]:
    """What ``cytofm command`` shows for ``option``: its help text and its choices (``key=`` settings: the
    command's whole --help, where they are described)."""
    if option.endswith("="):
        return CliRunner().invoke(app, [command, "--help"], terminal_width=2000).output, ()
    from enum import Enum

    param = _option(command, option)
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)  # typer's own click
    if isinstance(kind, type) and issubclass(kind, Enum):
        return param.help or "", tuple(m.value for m in kind)
    return param.help or "", tuple(getattr(getattr(param, "type", None), "choices", None) or ())


def _named(name: str, text: str) -> bool:
    import re

    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


@pytest.mark.parametrize("point", PLUG_POINTS, ids=lambda p: p.kind)
def test_every_plug_point_entry_is_offered_by_its_options_and_listed_by_doctor(point):
    from cytofm.cli.doctor import collect

    registry = point.load()
    assert registry.kind == point.kind and len(registry) > 0
    assert point.options or point.kind in ("input kind", "z-stack reader")  # found from the file, not chosen
    for spec in point.options:
        command, option = spec.split(" ", 1)
        text, choices = _offers(command, option)
        for e in registry.entries():
            shown = e.meta.get("syntax", e.name)  # an encoder family is offered as its spec syntax
            assert e.name in choices or (shown in text and _named(e.name, text)), \
                f"cytofm {spec} does not offer {point.kind} '{e.name}' ({shown})"
    rows = {item: value for item, value, _ in collect()}
    for e in registry.entries():
        assert f"{point.kind} {e.name}" in rows, f"cytofm doctor does not list {point.kind} '{e.name}'"
        assert e.description in rows[f"{point.kind} {e.name}"]


def test_the_plug_points_cover_the_cell_detectors_and_every_encoder_family():
    kinds = {p.kind: p for p in PLUG_POINTS}
    assert {"encoder family", "SSL method", "MIL model", "cell detector"} <= set(kinds)
    assert kinds["cell detector"].load() is CELL_DETECTORS
    assert kinds["encoder family"].load() is ENCODER_FAMILIES
    text, _ = _offers("extract", "--encoder")
    assert all(e.syntax in text for e in ENCODER_FAMILIES.entries())


def test_every_registry_in_the_package_is_a_plug_point():
    """A registry made anywhere in src/ and left out of cli/plugins.py would be offered and listed by
    nothing."""
    import cytofm

    root = Path(cytofm.__file__).parent
    made = set()
    for f in root.rglob("*.py"):
        if f.name != "registry.py" or f.parent.name != "utils":
            for m in re.finditer(r"^([A-Z_]+)(?::[^=]*)? = Registry\(", f.read_text(), re.M):
                made.add(f"{'.'.join(f.relative_to(root.parent).with_suffix('').parts)}:{m.group(1)}")
    assert made == {p.registry for p in PLUG_POINTS}
    assert len(made) == 9
